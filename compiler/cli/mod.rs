//! The `nnc` command line: argument handling in `args`, one file per command, and the glue
//! they share (`pipeline`: the compiler's stages through `driver`, with the flags' options;
//! `inputs`: `--input` files and printed or written outputs). Every failure is a
//! diagnostic on stderr and exit code 1; clap's usage errors exit with 2.

/// `print!` and `println!` to stdout that ignore a closed pipe (`nnc run ... | head`): the
/// reader has what it wanted, and `print!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod args;
mod check;
mod compare;
mod compile;
mod import;
mod inputs;
mod labels;
mod pipeline;
mod prune;
mod run;
mod sim;
mod sweep;
mod tensor_text;

use crate::diagnostics::{render, Diagnostic};
use crate::driver::Source;
use args::{Cli, Command};
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Run the CLI on the process arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    // Deeply nested but valid expressions recurse in elaboration; give that room.
    let worker = std::thread::Builder::new().stack_size(256 << 20).spawn(move || run_command(cli));
    match worker.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        // A panic is a compiler bug; its message has been printed by the panic hook.
        Ok(Err(_)) => 101,
        Err(e) => {
            eprintln!("error: cannot start the compiler thread: {e}");
            1
        }
    }
}

/// Diagnostics, rendered against the source when there is one.
pub(super) struct Failure {
    diags: Vec<Diagnostic>,
}

impl From<Diagnostic> for Failure {
    fn from(d: Diagnostic) -> Failure {
        Failure { diags: vec![d] }
    }
}

impl From<Vec<Diagnostic>> for Failure {
    fn from(diags: Vec<Diagnostic>) -> Failure {
        Failure { diags }
    }
}

pub(super) type CmdResult = Result<(), Failure>;

/// Context for printing diagnostics: the source file, once it has been read.
pub(super) struct Session {
    pub(super) source: Option<Source>,
    color: bool,
    /// Warnings already given once (commands that optimize a model several times, such as
    /// `compare`, would otherwise repeat them).
    said: std::cell::RefCell<std::collections::HashSet<String>>,
    /// The initializers of an ONNX model given as FILE: its weights unless `--weights` or
    /// `--random-weights` says otherwise.
    pub(super) imported_weights: Option<nnc_runtime::weights::WeightsFile>,
    /// The activation scales of an ONNX model's QDQ pairs (empty for a float model).
    pub(super) imported_scales: std::collections::HashMap<String, f32>,
}

impl Session {
    pub(super) fn emit(&self, diags: &[Diagnostic]) {
        if diags.is_empty() {
            return;
        }
        let (name, text) = self.source.as_ref().map_or(("", ""), |s| (s.name.as_str(), s.text.as_str()));
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(render(diags, name, text, self.color).as_bytes());
    }

    /// Emit `d` unless a diagnostic with the same message was emitted this way before.
    pub(super) fn emit_once(&self, d: Diagnostic) {
        if self.said.borrow_mut().insert(d.message.clone()) {
            self.emit(&[d]);
        }
    }
}

fn run_command(cli: Cli) -> i32 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut session = Session { source: None, color, said: Default::default(), imported_weights: None, imported_scales: Default::default() };
    let result = match cli.command {
        Command::Check(a) => check::check(&mut session, &a),
        Command::Summary(a) => check::summary(&mut session, &a),
        Command::Compile(a) => compile::compile(&mut session, &a),
        Command::Run(a) => run::run(&mut session, &a),
        Command::Sim(a) => sim::sim(&mut session, &a),
        Command::Compare(a) => compare::compare(&mut session, &a),
        Command::Sweep(a) => sweep::sweep(&mut session, &a),
        Command::Prune(a) => prune::prune(&mut session, &a),
        Command::Import(a) => import::import(&mut session, &a),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            session.emit(&f.diags);
            1
        }
    }
}

pub(super) fn write_output(path: Option<&Path>, text: &str) -> CmdResult {
    match path {
        Some(p) => std::fs::write(p, text).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", p.display())).into()),
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`nnc ... | head`) is not an error worth reporting.
            let _ = out.write_all(text.as_bytes());
            Ok(())
        }
    }
}

pub(super) fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}
