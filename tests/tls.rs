//! TLS and mutual TLS: the server with its certificate, clients and a worker process that trust its CA, and
//! client certificates when the server asks for them.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{Process, TestServer, spec};
use control_tower::{
    auth::tokens::hash_token,
    client::{ClientTls, ControlTower},
    config::TlsFiles,
    pb,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, names) in
            [("server", vec!["127.0.0.1".to_owned(), "localhost".to_owned()]), ("client", vec!["worker-1".to_owned()])]
        {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_files(&self, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        }
    }

    fn client(&self, with_certificate: bool) -> ClientTls {
        ClientTls {
            ca: Some(self.path("ca.pem")),
            cert: with_certificate.then(|| self.path("client.pem")),
            key: with_certificate.then(|| self.path("client.key")),
        }
    }
}

fn https(server: &TestServer) -> String {
    format!("https://{}", server.addr)
}

async fn lists(url: &str, tls: &ClientTls) -> Result<(), String> {
    let tower = ControlTower::connect_tls(url, tls).await.map_err(|e| format!("{e:#}"))?;
    tower.tasks().list_tasks(pb::ListTasksRequest::default()).await.map(|_| ()).map_err(|s| s.to_string())
}

#[tokio::test]
async fn clients_that_trust_the_ca_talk_tls_and_plaintext_is_refused() {
    let pki = Pki::new();
    let files = pki.server_files(false);
    let server = TestServer::configured(move |config| config.tls = Some(files)).await;
    lists(&https(&server), &pki.client(false)).await.unwrap();
    assert!(lists(&server.url(), &ClientTls::default()).await.is_err(), "plaintext reaches a TLS server");
    let untrusting = ClientTls { ca: Some(pki.path("server.pem")), ..Default::default() };
    assert!(lists(&https(&server), &untrusting).await.is_err(), "a client that does not trust the CA got through");
    server.stop().await;
}

#[tokio::test]
async fn with_mutual_tls_only_clients_with_a_certificate_get_in() {
    let pki = Pki::new();
    let files = pki.server_files(true);
    let server = TestServer::configured(move |config| config.tls = Some(files)).await;
    assert!(lists(&https(&server), &pki.client(false)).await.is_err(), "no client certificate, yet admitted");
    lists(&https(&server), &pki.client(true)).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_worker_process_runs_tasks_over_mutual_tls_with_its_token() {
    let pki = Pki::new();
    let files = pki.server_files(true);
    let table = format!(
        "worker worker-1 sha256:{}\noperator ops sha256:{}",
        hash_token("worker-token"),
        hash_token("ops-token")
    );
    let server = TestServer::configured(move |config| {
        config.tls = Some(files);
        config.tokens.inline = Some(table);
    })
    .await;
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
    let url = https(&server);
    let _worker = Process::spawn(
        &["worker", "--server", &url, "--worker-id", "worker-1"],
        &[
            ("JCT_TOKEN", "worker-token"),
            ("JCT_TLS_CA", ca.to_str().unwrap()),
            ("JCT_TLS_CLIENT_CERT", cert.to_str().unwrap()),
            ("JCT_TLS_CLIENT_KEY", key.to_str().unwrap()),
        ],
        server.dir.path().join("worker.log"),
    );
    let operator = ControlTower::connect_tls(&url, &pki.client(true)).await.unwrap().with_token("ops-token").unwrap();
    let mut request = spec("Echo over TLS");
    request.requested_by = None;
    let task = operator.enqueue(request, None).await.unwrap().task.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = operator.get(&task.id).await.unwrap();
        if now.status() == pb::TaskStatus::Completed {
            assert_eq!(now.worker_id, "worker-1");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the worker never completed the task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn with_mutual_tls_a_certificate_can_be_the_identity() {
    let pki = Pki::new();
    let files = pki.server_files(true);
    // The client certificate carries the name worker-1; no token is involved.
    let server = TestServer::configured(move |config| {
        config.tls = Some(files);
        config.tokens.inline = Some("worker worker-1 cert".into());
    })
    .await;
    let tower = ControlTower::connect_tls(https(&server), &pki.client(true)).await.unwrap();
    let pull = |worker_id: &str| {
        let request = pb::PullTasksRequest { worker_id: worker_id.into(), operations: vec![], max_in_flight: 1 };
        let mut workers = tower.workers();
        async move { workers.pull_tasks(request).await.map(|_| ()).map_err(|s| s.code()) }
    };
    assert_eq!(pull("worker-1").await, Ok(()), "the certificate's name is the worker's identity");
    assert_eq!(pull("worker-2").await, Err(tonic::Code::PermissionDenied), "and only that identity");
    let list = tower.tasks().list_tasks(pb::ListTasksRequest::default()).await.unwrap_err();
    assert_eq!(list.code(), tonic::Code::PermissionDenied, "a worker identity reads no tasks");
    server.stop().await;

    // A certificate whose names are not in the table gets nowhere.
    let files = pki.server_files(true);
    let server = TestServer::configured(move |config| {
        config.tls = Some(files);
        config.tokens.inline = Some("worker someone-else cert".into());
    })
    .await;
    let tower = ControlTower::connect_tls(https(&server), &pki.client(true)).await.unwrap();
    let refused = tower.tasks().list_tasks(pb::ListTasksRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.message().contains("worker-1"), "{}", refused.message());
    server.stop().await;
}
