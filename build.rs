//! Build-time facts: whether the Elasticsearch tests are to be skipped (`IMGVEC_SKIP_ES_TESTS=1`
//! marks them ignored, so the test totals show them as skipped rather than passed).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_es)");
    println!("cargo::rerun-if-env-changed=IMGVEC_SKIP_ES_TESTS");
    if std::env::var("IMGVEC_SKIP_ES_TESTS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=skip_es");
    }
}
