//! The `misdirect` binary: parses arguments and hands over to [`misdirect::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    misdirect::cli::main()
}
