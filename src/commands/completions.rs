//! `triadapt completions`: a shell completion script for the whole command line, printed to
//! stdout (clap_complete writes it from the parser `cli.rs` hands over).

/// `triadapt completions`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of `command` (the `triadapt` parser) for the shell.
pub fn run(args: &CompletionsArgs, command: &mut clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(args.shell, command, "triadapt", &mut std::io::stdout());
    Ok(())
}
