//! Which roles may call which RPC. Checks that depend on the resource (whose task, whose lease, whose object) are
//! made by the handlers, with the caller's identity.

use super::Role::{self, Agent, Operator, Viewer, Worker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed: health checks, which load balancers and orchestrators make without credentials.
    Public,
    /// A valid token whose role is one of these.
    Roles(&'static [Role]),
}

impl Access {
    pub fn admits(self, role: Role) -> bool {
        match self {
            Access::Public => true,
            Access::Roles(roles) => roles.contains(&role),
        }
    }
}

const EVERYONE: &[Role] = &[Operator, Agent, Worker, Viewer];
const READERS: &[Role] = &[Operator, Agent, Viewer];
const WRITERS: &[Role] = &[Operator, Agent];
const OPERATORS: &[Role] = &[Operator];

/// The rule for a gRPC path (`/package.Service/Method`). A method no rule names is for operators only, so that an
/// RPC added later is closed until someone decides who may call it.
pub fn access(path: &str) -> Access {
    rule(path).unwrap_or(Access::Roles(OPERATORS))
}

fn rule(path: &str) -> Option<Access> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let roles = match (service, method) {
        ("grpc.health.v1.Health", _) => return Some(Access::Public),
        ("grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection", _) => EVERYONE,
        ("controltower.v1.TaskService", "EnqueueTask" | "EnqueueTasks") => WRITERS,
        ("controltower.v1.TaskService", "GetTask" | "ListTasks" | "WatchTasks") => READERS,
        ("controltower.v1.TaskService", "CancelTask") => OPERATORS,
        (
            "controltower.v1.WorkerService",
            "PullTasks" | "Heartbeat" | "CompleteTask" | "CompleteTasks" | "FailTask" | "PushTrace",
        ) => &[Operator, Worker],
        ("controltower.v1.CwomService", m) if m.starts_with("Get") || m.starts_with("List") => READERS,
        ("controltower.v1.CwomService", m)
            if ["Create", "Update", "Link", "Unlink"].iter().any(|verb| m.starts_with(verb)) =>
        {
            WRITERS
        }
        ("controltower.v1.AuditService", "ListAuditEvents" | "WatchAuditEvents" | "VerifyAuditChain") => {
            &[Operator, Viewer]
        }
        _ => return None,
    };
    Some(Access::Roles(roles))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every RPC of the API, from the compiled protos.
    fn all_rpcs() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut paths = Vec::new();
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
        paths
    }

    #[test]
    fn every_rpc_has_a_rule() {
        let rpcs = all_rpcs();
        assert!(rpcs.len() > 40, "{rpcs:?}");
        let missing: Vec<_> = rpcs.iter().filter(|p| rule(p).is_none()).collect();
        assert!(missing.is_empty(), "RPCs without a rule: {missing:?}");
    }

    #[test]
    fn viewers_only_read_and_workers_only_work() {
        for path in all_rpcs() {
            let method = path.rsplit('/').next().unwrap();
            let reads = ["Get", "List", "Watch", "Verify"].iter().any(|verb| method.starts_with(verb));
            assert_eq!(access(&path).admits(Viewer), reads, "{path}");
            assert_eq!(access(&path).admits(Worker), path.contains("WorkerService"), "{path}");
            assert!(access(&path).admits(Operator), "{path}");
        }
        assert_eq!(access("/controltower.v1.TaskService/Unknown"), Access::Roles(OPERATORS));
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Public);
    }
}
