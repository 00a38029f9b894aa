//! `drover operator gossip keyring generate` (and its older name, `drover operator
//! keygen`): a new key for `server { encrypt = "..." }`, made locally; no agent is asked.

use super::{Io, dispatch, parse_flags};

const GOSSIP_HELP: &str = "\
Usage: drover operator gossip <subcommand> [options] [args]

  This command groups subcommands for the encryption of the servers' gossip.

Subcommands:
    keyring     Manage gossip encryption keys
";

const KEYRING_HELP: &str = "\
Usage: drover operator gossip keyring <subcommand> [options]

  Gossip encryption keys. Every server of a region needs the same key in its
  configuration (server { encrypt = \"<key>\" }); a server without it, or with
  another, neither hears nor is heard by the others.

Subcommands:
    generate    Generate a new encryption key
";

const GENERATE_HELP: &str = "\
Usage: drover operator gossip keyring generate

  Prints a new random 32-byte (AES-256) gossip encryption key, base64-encoded,
  for the encrypt option of the agents' server block.
";

const GOSSIP_SUBCOMMANDS: &[(&str, super::Command)] = &[("keyring", keyring)];
const KEYRING_SUBCOMMANDS: &[(&str, super::Command)] = &[("generate", generate)];

pub fn gossip(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, GOSSIP_SUBCOMMANDS, GOSSIP_HELP, io)
}

fn keyring(args: &[String], io: &mut Io<'_>) -> u8 {
    dispatch(args, KEYRING_SUBCOMMANDS, KEYRING_HELP, io)
}

/// Prints a new key; `drover operator keygen` is the same command.
pub fn generate(args: &[String], io: &mut Io<'_>) -> u8 {
    let flags = match parse_flags(args, &[], GENERATE_HELP, io) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    if !flags.args.is_empty() {
        let _ = writeln!(io.err, "This command takes no arguments\n");
        let _ = write!(io.err, "{GENERATE_HELP}");
        return 1;
    }
    match drover_runtime::net::gossip_key::generate_key() {
        Ok(key) => {
            let _ = writeln!(io.out, "{key}");
            0
        }
        Err(error) => {
            let _ = writeln!(io.err, "Error generating a key: {error}");
            1
        }
    }
}
