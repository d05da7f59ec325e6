//! How long generating a CA plus ten leaf certificates takes (what `misdirect serve` spends
//! on certificates before it is ready). Run with `cargo bench --bench pki`.

use std::time::{Duration, Instant};

use misdirect::pki::Pki;
use misdirect::scenario;

const ROUNDS: usize = 200;

fn main() {
    let certificates: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"name": "leaf{i}", "sans": ["h{i}.test", "*.h{i}.test", "127.0.0.{}"]}}"#,
                i + 1
            )
        })
        .collect();
    let json = format!(
        r#"{{"certificates": [{}], "hosts": [{{"names": ["h0.test"], "certificate": "leaf0"}}]}}"#,
        certificates.join(",")
    );
    let (scenario, _) = match scenario::from_bytes(json.as_bytes()) {
        Ok(loaded) => loaded,
        Err(err) => panic!("bench scenario invalid: {err}"),
    };
    let mut samples: Vec<Duration> = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let pki =
            Pki::generate(&scenario, None, time::OffsetDateTime::now_utc()).expect("generates");
        samples.push(start.elapsed());
        assert_eq!(pki.leaves.len(), 10);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "CA + 10 ECDSA P-256 leaves, {ROUNDS} rounds: median {:.3} ms, p90 {:.3} ms, max {:.3} ms",
        ms(samples[ROUNDS / 2]),
        ms(samples[ROUNDS * 9 / 10]),
        ms(samples[ROUNDS - 1])
    );
}
