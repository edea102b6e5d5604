//! The open-files limit: loadgen raises its soft limit to fit `-u` (one socket per user), and
//! says to run `ulimit -n` when the hard limit is too low. The binary runs under `sh`, whose
//! `ulimit` sets the limits it inherits.

use std::process::Command;

fn loadgen_under(limits: &str, users: u32) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_loadgen");
    // Port 9 (discard) on loopback: nothing listens, so the one request fails at once.
    let script = format!(
        "{limits} && exec \"$0\" --host http://127.0.0.1:9 -u {users} -r 100000 -n 1 --only-summary"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin)
        .output()
        .expect("run sh")
}

#[test]
fn a_too_low_hard_limit_is_a_clear_error() {
    let out = loadgen_under("ulimit -n 300 && ulimit -Hn 300", 1000);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("-u 1000 needs 1256 open files"), "{stderr}");
    assert!(stderr.contains("hard limit is 300"), "{stderr}");
    assert!(stderr.contains("ulimit -n 1256"), "{stderr}");
}

#[test]
fn the_soft_limit_is_raised_to_fit_the_users() {
    // Soft 300, hard as it is (at least 1256 on the machines the tests run on).
    let out = loadgen_under("ulimit -Sn 300", 1000);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no response 1 requests"), "{stdout}");
}
