//! `control-tower auth`: make tokens and the token-table lines that admit them. Nothing here talks to a server.

use std::io::Read;

use clap::{Args, Subcommand};

use super::{Role, tokens};

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Make a random token: prints the token (hand it to the caller; it is not kept anywhere) and, on stderr, the
    /// line to add to the token file.
    NewToken {
        /// operator, agent, worker or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The caller's identity, recorded as the actor of what it does (a worker's must be its worker id).
        #[arg(long)]
        id: String,
    },
    /// Print the `sha256:` form of a token (read from stdin when not given), for the token file.
    HashToken { token: Option<String> },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: operator, agent, worker or viewer"))
}

pub fn run(args: AuthArgs) -> anyhow::Result<()> {
    match args.command {
        AuthCommand::NewToken { role, id } => {
            tokens::validate_identity(&id).map_err(anyhow::Error::msg)?;
            let token = tokens::new_token()?;
            let line = format!("{role} {id} sha256:{}", tokens::hash_token(&token));
            println!("{token}");
            eprintln!("add this line to the token file:\n{line}");
        }
        AuthCommand::HashToken { token } => {
            let token = match token {
                Some(token) => token,
                None => {
                    let mut input = String::new();
                    std::io::stdin().read_to_string(&mut input)?;
                    input.trim().to_owned()
                }
            };
            anyhow::ensure!(!token.is_empty(), "no token given");
            println!("sha256:{}", tokens::hash_token(&token));
        }
    }
    Ok(())
}
