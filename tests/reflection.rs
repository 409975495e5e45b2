//! What grpcurl needs with no proto files at hand: server reflection (v1 and v1alpha) listing every service and
//! describing every message, and the health service.

mod common;

use common::*;
use tonic_reflection::pb::{v1, v1alpha};

const EXPECTED: [&str; 4] = [
    "controltower.v1.TaskService",
    "controltower.v1.WorkerService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
];

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_services_and_resolve_messages() {
    let server = TestServer::start().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let requests = [
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "controltower.v1.TaskSpec".into(),
            )),
        },
    ];
    let mut responses = client.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in EXPECTED {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors")
    };
    assert!(!files.file_descriptor_proto.is_empty());

    // Older clients (grpcurl before v1 support) speak v1alpha.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "google.protobuf.Struct".into(),
        )),
    };
    let mut responses = alpha.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "well-known imports are resolvable: {response:?}"
    );
    server.stop().await;
}
