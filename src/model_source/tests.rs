//! Each resolution step on fake directory trees (no real checkpoint is read: only `config.json`'s
//! presence matters here).

use super::*;

const REV: &str = "32bd64288804d66eefd0ccbe215aa642df71cc41";

/// A fake checkpoint directory: just enough for the resolver (a `config.json`).
fn checkpoint(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
}

/// `repo` in the hub cache at `cache`, in huggingface_hub's layout; `with_ref`: write refs/main.
fn cached(cache: &Path, repo: &str, rev: &str, with_ref: bool) -> PathBuf {
    let repo_dir = cache.join(repo_folder(repo));
    let snap = repo_dir.join("snapshots").join(rev);
    checkpoint(&snap);
    if with_ref {
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), format!("{rev}\n")).unwrap();
    }
    snap
}

fn env_in(tmp: &Path) -> Env {
    let cwd = tmp.join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    Env {
        home: Some(tmp.join("home")),
        cwd,
        ..Env::default()
    }
}

#[test]
fn explicit_dir_wins_over_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    env.hf_hub_cache = Some(tmp.path().join("hub"));
    cached(&tmp.path().join("hub"), DEFAULT_REPO, REV, true);
    checkpoint(&env.cwd.join("models/clip-vit-large-patch14"));
    let mine = tmp.path().join("mine");
    let r = resolve(Some(&mine), DEFAULT_REPO, &env).unwrap();
    assert_eq!(r.dir, mine);
    assert_eq!(r.source, Source::ExplicitDir);
    assert_eq!(r.name, "mine");
    // Relative: to the current directory.
    let r = resolve(Some(Path::new("rel/ckpt")), DEFAULT_REPO, &env).unwrap();
    assert_eq!(r.dir, env.cwd.join("rel/ckpt"));
}

#[test]
fn hub_cache_from_hf_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    let hub = tmp.path().join("hub");
    env.hf_hub_cache = Some(hub.clone());
    // HF_HOME is set too, but HF_HUB_CACHE comes first.
    env.hf_home = Some(tmp.path().join("hfhome"));
    cached(&tmp.path().join("hfhome/hub"), DEFAULT_REPO, "other", true);
    let snap = cached(&hub, DEFAULT_REPO, REV, true);
    let r = resolve(None, DEFAULT_REPO, &env).unwrap();
    assert_eq!(r.dir, snap);
    assert_eq!(r.name, "clip-vit-large-patch14");
    match &r.source {
        Source::HubCache {
            revision, cache, ..
        } => {
            assert_eq!(revision, REV);
            assert_eq!(cache.chosen_by, "HF_HUB_CACHE");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hub_cache_from_hf_home() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    let hf_home = tmp.path().join("hfhome");
    env.hf_home = Some(hf_home.clone());
    let snap = cached(
        &hf_home.join("hub"),
        "openai/clip-vit-base-patch32",
        REV,
        true,
    );
    let r = resolve(None, "openai/clip-vit-base-patch32", &env).unwrap();
    assert_eq!(r.dir, snap);
    assert_eq!(r.name, "clip-vit-base-patch32");
    assert_eq!(r.source.kind(), "hf-cache");
}

#[test]
fn hub_cache_default_under_home_and_huggingface_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    let home_hub = tmp.path().join("home/.cache/huggingface/hub");
    let snap = cached(&home_hub, DEFAULT_REPO, REV, true);
    assert_eq!(resolve(None, DEFAULT_REPO, &env).unwrap().dir, snap);
    env.huggingface_hub_cache = Some(tmp.path().join("legacy"));
    let legacy = cached(&tmp.path().join("legacy"), DEFAULT_REPO, REV, true);
    assert_eq!(resolve(None, DEFAULT_REPO, &env).unwrap().dir, legacy);
}

#[test]
fn without_refs_main_the_single_snapshot_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    let hub = tmp.path().join("hub");
    env.hf_hub_cache = Some(hub.clone());
    let snap = cached(&hub, DEFAULT_REPO, REV, false);
    assert_eq!(resolve(None, DEFAULT_REPO, &env).unwrap().dir, snap);
    // Two snapshots and no ref: ambiguous, said so.
    cached(&hub, DEFAULT_REPO, "second", false);
    let err = resolve(None, DEFAULT_REPO, &env).unwrap_err().to_string();
    assert!(err.contains("2 snapshots"), "{err}");
}

#[test]
fn models_folder_of_a_checkout_is_the_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    env.hf_hub_cache = Some(tmp.path().join("empty-hub"));
    let dir = env.cwd.join("models/clip-vit-large-patch14");
    checkpoint(&dir);
    let r = resolve(None, DEFAULT_REPO, &env).unwrap();
    assert_eq!(r.dir, dir);
    assert_eq!(r.source.kind(), "checkout");
}

#[test]
fn nothing_found_lists_every_place_and_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = env_in(tmp.path());
    let hf_home = tmp.path().join("hfhome");
    env.hf_home = Some(hf_home.clone());
    // A snapshot without config.json: an incomplete download, named as such.
    let repo_dir = hf_home.join("hub").join(repo_folder(DEFAULT_REPO));
    std::fs::create_dir_all(repo_dir.join("snapshots").join(REV)).unwrap();
    let err = resolve(None, DEFAULT_REPO, &env).unwrap_err();
    assert_eq!(err.looked.len(), 3, "{err}");
    let msg = err.to_string();
    for want in [
        "--model-dir / IMGVEC_MODEL_DIR",
        &repo_dir.join("snapshots").join(REV).display().to_string(),
        "no config.json",
        &env.cwd
            .join("models/clip-vit-large-patch14")
            .display()
            .to_string(),
        "imgvec fetch-model openai/clip-vit-large-patch14",
        "models/README.md",
    ] {
        assert!(msg.contains(want), "missing {want:?} in: {msg}");
    }
    // No repo folder at all: the cache directory and the setting that chose it.
    std::fs::remove_dir_all(&repo_dir).unwrap();
    let msg = resolve(None, DEFAULT_REPO, &env).unwrap_err().to_string();
    assert!(
        msg.contains(&repo_dir.display().to_string()) && msg.contains("HF_HOME"),
        "{msg}"
    );
}

#[test]
fn bad_repo_ids_are_refused_before_touching_the_disk() {
    assert!(check_repo_id("openai/clip-vit-large-patch14").is_ok());
    assert!(check_repo_id("gpt2").is_ok());
    for bad in ["", "a/b/c", "../x", "a//b", "a b/c"] {
        assert!(check_repo_id(bad).is_err(), "{bad}");
    }
    let env = env_in(tempfile::tempdir().unwrap().path());
    let err = resolve(None, "../../etc", &env).unwrap_err().to_string();
    assert!(err.contains("not a Hugging Face repository id"), "{err}");
}

#[test]
fn cache_dir_order_and_home_expansion() {
    let env = Env {
        home: Some(PathBuf::from("/h")),
        ..Env::default()
    };
    assert_eq!(
        hub_cache(&env).unwrap().dir,
        PathBuf::from("/h/.cache/huggingface/hub")
    );
    let env = Env {
        xdg_cache_home: Some(PathBuf::from("/x")),
        ..env
    };
    assert_eq!(
        hub_cache(&env).unwrap().dir,
        PathBuf::from("/x/huggingface/hub")
    );
    assert_eq!(hub_cache(&Env::default()), None);
    assert_eq!(
        expand_home(Path::new("~/hf"), Some(Path::new("/h"))),
        PathBuf::from("/h/hf")
    );
}
