//! CPU time of all this process's threads so far, in seconds (Linux: /proc/self/task/*/schedstat;
//! NaN elsewhere). On a busy machine wall time says little; work per CPU-second still says how good
//! a kernel is. Shared by the benches that print it (`#[path]`).

pub fn cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}
