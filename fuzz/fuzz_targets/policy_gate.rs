//! The policy gate with fuzzed allowed prefixes against fuzzed specs. The prefixes must parse as documented
//! (trimmed, lower-cased, empty ones dropped), an admitted repository must lie inside an allowed namespace, and
//! every refusal must carry the code of the first rule that fails.
//!
//! Input, as text (readable seeds): the first line is `JCT_ALLOWED_REPO_PREFIXES`; every further line is a spec
//! as `<operation> <time budget or -> <flags> <repo>`, flags holding `n` (network), `s` (secrets) and `l` (repo in
//! the legacy `repository` field), or `-`. The repo is the rest of the line, spaces included.
#![no_main]

use control_tower::{pb, spec};
use control_tower_fuzz::{assert_gate, assert_valid};
use libfuzzer_sys::fuzz_target;

#[allow(deprecated)] // the legacy `repository` field is part of what the gate must see through
fn spec_of(line: &str) -> Option<(pb::TaskSpec, &str)> {
    let mut parts = line.splitn(4, ' ');
    let (operation, budget, flags, repo) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let target = if flags.contains('l') {
        pb::Target { repository: repo.to_owned(), ..Default::default() }
    } else {
        pb::Target { repo: repo.to_owned(), ..Default::default() }
    };
    let request = pb::TaskSpec {
        requested_by: Some(pb::Requester { kind: "agent".into(), id: "fuzz".into(), label: String::new() }),
        objective: "Check the policy gate".into(),
        operation: operation.to_owned(),
        target: Some(target),
        constraints: Some(pb::Constraints {
            time_budget_seconds: budget.parse().ok(),
            allow_network: flags.contains('n'),
            allow_secrets: flags.contains('s'),
        }),
        ..Default::default()
    };
    Some((request, repo))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let prefixes = lines.next().unwrap_or_default();
    let policy = spec::Policy::from_comma_separated(prefixes);
    let expected: Vec<String> =
        prefixes.split(',').map(|p| p.trim().to_lowercase()).filter(|p| !p.is_empty()).collect();
    assert_eq!(policy.allowed_repo_prefixes(), expected.as_slice());

    for (request, repo) in lines.filter_map(spec_of) {
        let Ok(task) = spec::validate(Some(request)) else { continue };
        assert_valid(&task);
        assert_gate(&policy, &task);
        if policy.check(&task).is_ok() {
            // Admitted: the repository as given, normalised, lies inside a namespace the operator allowed.
            let normalised = spec::normalise_repo(repo);
            assert_eq!(task.target_repo, normalised);
            assert!(expected.iter().any(|p| normalised.starts_with(p.as_str())), "{normalised:?} by {expected:?}");
            assert!(spec::OPERATIONS.contains(&task.operation.as_str()));
            assert!((30..=86_400).contains(&task.time_budget_seconds));
            assert!(!task.allow_network && !task.allow_secrets);
        }
    }
});
