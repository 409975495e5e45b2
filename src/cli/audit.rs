//! `control-tower audit list|watch|verify`.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::Value as Json;

use super::{ClientArgs, Output, render};
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, newest first.
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Follow audit entries live, as they are committed, until interrupted.
    Watch {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Resume after this entry's cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Check the hash chain over the audit log; exits 9 at the first broken link.
    Verify,
}

/// Exit code of `audit verify` when the chain is broken.
pub const CHAIN_BROKEN: i32 = 9;

#[derive(Debug, Clone, Args)]
pub struct AuditFilterArgs {
    #[arg(long)]
    trace_id: Option<String>,
    /// e.g. Task, Issue, Run.
    #[arg(long)]
    entity_kind: Option<String>,
    #[arg(long)]
    entity_id: Option<String>,
    #[arg(long)]
    actor_id: Option<String>,
    /// created, updated, status_changed, linked, unlinked.
    #[arg(long)]
    action: Option<String>,
}

impl AuditFilterArgs {
    fn filter(self) -> pb::AuditFilter {
        pb::AuditFilter {
            entity_kind: self.entity_kind.unwrap_or_default(),
            entity_id: self.entity_id.unwrap_or_default(),
            trace_id: self.trace_id.unwrap_or_default(),
            actor_id: self.actor_id.unwrap_or_default(),
            action: self.action.unwrap_or_default(),
            since: None,
            until: None,
        }
    }
}

pub async fn run(client: &ClientArgs, command: AuditCommand) -> anyhow::Result<i32> {
    let tower = client.connect().await?;
    let mut audit = tower.audit();
    match command {
        AuditCommand::List { filter, limit } => {
            let filter = filter.filter();
            let mut events = Vec::new();
            let mut page_token = String::new();
            while events.len() < limit {
                let request = pb::ListAuditEventsRequest {
                    filter: Some(filter.clone()),
                    page_size: (limit - events.len()).min(1000) as i32,
                    page_token,
                };
                let page = audit.list_audit_events(request).await?.into_inner();
                events.extend(page.events);
                page_token = page.next_page_token;
                if page_token.is_empty() {
                    break;
                }
            }
            events.truncate(limit);
            match client.output {
                Output::Json => render::json(&events)?,
                Output::Table => {
                    let rows: Vec<Vec<String>> = events.iter().map(row).collect::<anyhow::Result<_>>()?;
                    render::table(&HEADER, &rows);
                }
            }
            Ok(0)
        }
        AuditCommand::Verify => {
            let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await?.into_inner();
            match client.output {
                Output::Json => render::json(&report)?,
                Output::Table => {
                    let verdict = if report.intact { "intact" } else { "BROKEN" };
                    let mut rows = vec![
                        vec!["chain".to_owned(), verdict.to_owned()],
                        vec!["entries verified".to_owned(), report.entries_verified.to_string()],
                        vec!["entries not sealed yet".to_owned(), report.entries_unsealed.to_string()],
                        vec!["head".to_owned(), format!("seq {} sha256:{}", report.head_seq, report.head_hash)],
                    ];
                    if let Some(broken) = &report.first_broken {
                        rows.push(vec!["first broken link".to_owned(), format!("seq {}", broken.seq)]);
                        rows.push(vec!["audit entry".to_owned(), broken.audit_id.to_string()]);
                        rows.push(vec!["reason".to_owned(), broken.reason.clone()]);
                    }
                    render::table(&["AUDIT", "CHAIN"], &rows);
                }
            }
            Ok(if report.intact { 0 } else { CHAIN_BROKEN })
        }
        AuditCommand::Watch { filter, cursor } => {
            let request =
                pb::WatchAuditEventsRequest { filter: Some(filter.filter()), cursor: cursor.unwrap_or_default() };
            let mut events = audit.watch_audit_events(request).await?.into_inner();
            loop {
                let event = tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(0),
                    event = events.message() => event?,
                };
                let Some(event) = event else { return Ok(0) };
                match client.output {
                    Output::Json => render::json_line(&event)?,
                    Output::Table => println!("{}", row(&event)?.join("  ")),
                }
                std::io::stdout().flush()?;
            }
        }
    }
}

const HEADER: [&str; 7] = ["ID", "AT", "ACTOR", "ACTION", "ENTITY", "STATUS", "NOTE"];

fn row(event: &pb::AuditEvent) -> anyhow::Result<Vec<String>> {
    let json = serde_json::to_value(event)?;
    let status = |side: &str| json.get(side).and_then(|s| s.get("status")).map(render::cell).unwrap_or_default();
    let (before, after) = (status("before"), status("after"));
    let transition = if before.is_empty() { after } else { format!("{before} -> {after}") };
    Ok(vec![
        event.id.to_string(),
        render::cell(json.get("ts").unwrap_or(&Json::Null)),
        format!("{}:{}", event.actor_kind, event.actor_id),
        event.action.clone(),
        format!("{} {}", event.entity_kind, event.entity_id),
        transition,
        render::cell(&Json::String(event.note.clone())),
    ])
}
