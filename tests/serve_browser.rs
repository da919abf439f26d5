//! The search page in a real browser: headless Chromium driven over WebDriver (chromedriver), against
//! `imgvec serve` on the embedded store with the tiny model. A person's path through the page: see
//! the index's facts, search by text, by an uploaded, dropped and pasted image, open a result, "more
//! like this", filter by label, use the keyboard, at desktop and phone width. A folder named like an
//! HTML tag must show as text. The duplicates view: an exact copy (the same bytes at a second path)
//! grouped with its keeper, at any distance, and its path to copy. Screenshots go to
//! target/serve-desktop.png, serve-viewer.png, serve-dupes.png and serve-phone.png.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them).

mod common;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::time::Duration;

use common::{fixtures, stderr, TestIndex};
use serde_json::{json, Value};
use serve::{hit_ids, Corpus, Server, XSS_LABEL};
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(60);
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";
const RIGHT: &str = "\u{E014}";
const HOME: &str = "\u{E011}";

/// What the result grid shows: each tile's id, file name and label.
fn tiles(b: &Browser) -> Vec<(String, String, String)> {
    let v = b.js(
        "return [...document.querySelectorAll('.tile')].map(t => \
           [t.dataset.id, t.querySelector('.name').textContent, t.querySelector('.label').textContent])",
        json!([]),
    );
    serde_json::from_value(v).unwrap()
}

fn tile_ids(b: &Browser) -> Vec<String> {
    tiles(b).into_iter().map(|t| t.0).collect()
}

fn wait_for_tiles(b: &Browser, what: &str, ids: &[String]) {
    let script = format!(
        "return JSON.stringify([...document.querySelectorAll('.tile')].map(t => t.dataset.id)) === '{}'",
        serde_json::to_string(ids).unwrap()
    );
    b.wait_for(what, &script, WAIT);
}

/// Every thumbnail on screen has loaded as an image.
fn wait_for_thumbnails(b: &Browser) {
    b.wait_for(
        "the thumbnails to load",
        "const imgs = [...document.querySelectorAll('.tile img')]; \
         return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)",
        WAIT,
    );
}

fn text(b: &Browser, css: &str) -> String {
    b.js(
        "return document.querySelector(arguments[0]).textContent",
        json!([css]),
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn save(name: &str, png: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Drops (`drop`) or pastes (`paste`) the indexed image `id` onto the page, as a person would.
fn hand_over_image(b: &Browser, event: &str, id: &str) {
    b.js(
        "return (async () => {
           const blob = await (await fetch('/image/' + arguments[1])).blob();
           const dt = new DataTransfer();
           dt.items.add(new File([blob], 'handed.png', {type: blob.type}));
           const e = arguments[0] === 'drop'
             ? new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})
             : new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true});
           document.dispatchEvent(e);
           return true;
         })()",
        json!([event, id]),
    );
}

/// What the API says the page should show, asked before the browser opens.
struct Expected {
    by_text: Value,
    text_ids: Vec<String>,
    chelsea: String,
    chelsea_path: String,
    astronaut: String,
    similar: Vec<String>,
    similar_space: Vec<String>,
    /// `/api/dupes` at the default and at the slider's minimum distance.
    dupes: Value,
    dupes_min: Value,
    /// A cut-off between the third and the fourth text hit, and the hits within it.
    cut_off: String,
    cut_ids: Vec<String>,
    /// chelsea.png's second path (see [`add_exact_copy`]).
    copy_path: String,
}

fn expected(server: &Server, corpus: &Corpus, copy_path: String) -> Expected {
    let (_, by_text) = server.search_json(&json!({"q": "a photo", "k": 24}));
    let text_ids = hit_ids(&by_text);
    assert_eq!(text_ids.len(), 7);
    let third = by_text["hits"][2]["distance"].as_f64().unwrap();
    let cut_off = format!("{:.4}", third + 0.00005);
    let (_, cut) = server.search_json(
        &json!({"q": "a photo", "k": 24, "max_distance": cut_off.parse::<f64>().unwrap()}),
    );
    let cut_ids = hit_ids(&cut);
    assert!((3..7).contains(&cut_ids.len()), "{cut}");
    let chelsea = corpus.id_of("cats", "chelsea.png");
    let (_, similar) = server.get_json(&format!("/api/similar/{chelsea}?k=24"));
    let (_, space) = server.get_json(&format!("/api/similar/{chelsea}?k=24&label=space"));
    Expected {
        by_text,
        text_ids,
        chelsea_path: corpus.path("cats", "chelsea.png").display().to_string(),
        chelsea,
        astronaut: corpus.id_of("space", "astronaut.png"),
        similar: hit_ids(&similar),
        similar_space: hit_ids(&space),
        dupes: server.get_json("/api/dupes").1,
        dupes_min: server.get_json("/api/dupes?max_distance=0.02").1,
        copy_path,
        cut_off,
        cut_ids,
    }
}

fn wait_first_tile(b: &Browser, what: &str, id: &str) {
    let script =
        format!("const t = document.querySelector('.tile'); return t && t.dataset.id === '{id}'");
    b.wait_for(what, &script, WAIT);
}

fn wait_viewer(b: &Browser, what: &str, open: bool) {
    let script = format!("return document.getElementById('viewer').open === {open}");
    b.wait_for(what, &script, WAIT);
}

#[test]
fn a_person_finds_sees_and_refines_results() {
    let idx = TestIndex::local("browser");
    let corpus = Corpus::new();
    corpus.ingest(&idx);
    let copy_path = add_exact_copy(&idx, &corpus);
    let server = Server::start(&idx, &[]);
    let want = expected(&server, &corpus, copy_path);
    let b = Browser::start();
    b.goto(&server.url);
    sees_the_index(&b);
    searches_by_text(&b, &want);
    searches_by_upload_and_opens_a_result(&b, &want);
    refines_by_label_and_keyboard(&b, &want);
    drops_pastes_and_reads_errors(&b, &want);
    finds_duplicates(&b, &want);
    cuts_off_by_distance(&b, &want);
    fits_a_phone(&b, &want);
    sees_new_images_without_a_reload(&b, &idx, &corpus);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// chelsea.png's bytes at a second path, `backup/chelsea.png`, ingested after the corpus so that
/// its document keeps label and path: one document, two paths. Returns the second path.
fn add_exact_copy(idx: &TestIndex, corpus: &Corpus) -> String {
    let folder = corpus.dir.path().join("backup");
    std::fs::create_dir_all(&folder).unwrap();
    let copy = folder.join("chelsea.png");
    std::fs::copy(corpus.path("cats", "chelsea.png"), &copy).unwrap();
    let out = idx.run(&[
        "ingest",
        folder.to_str().unwrap(),
        "--label-from-dir",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    copy.display().to_string()
}

/// A group as the duplicates view shows it.
#[derive(Debug, serde::Deserialize)]
struct Group {
    paths: Vec<String>,
    /// The members with a "keep" badge, and with a "same bytes" badge.
    keep: Vec<String>,
    same: Vec<String>,
    /// The distance shown on each member but the keeper.
    distances: Vec<String>,
}

fn shown_groups(b: &Browser) -> Vec<Group> {
    let v = b.js(
        "const paths = (g, css) => [...g.querySelectorAll(css)].map(p => p.textContent); \
         return [...document.querySelectorAll('#groups .group')].map(g => ({ \
           paths: paths(g, '.member .path'), \
           keep: [...g.querySelectorAll('.member')].filter(m => m.querySelector('.badge.keep')) \
             .map(m => m.querySelector('.path').textContent), \
           same: [...g.querySelectorAll('.member')].filter(m => m.querySelector('.badge.same')) \
             .map(m => m.querySelector('.path').textContent), \
           distances: paths(g, '.member .distance')}))",
        json!([]),
    );
    serde_json::from_value(v).unwrap()
}

/// The paths of each group of a `/api/dupes` answer.
fn api_groups(answer: &Value) -> Vec<Vec<String>> {
    let groups = answer["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    groups
        .iter()
        .map(|g| {
            let members = g["members"].as_array().unwrap();
            members
                .iter()
                .map(|m| m["path"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// The group with chelsea.png and its copy: it is the API's, has one keeper, its first member,
/// and "same bytes" on the two copies only.
fn copy_group(b: &Browser, want: &Expected, api: &Value) -> Group {
    let mut shown = shown_groups(b);
    let paths: Vec<Vec<String>> = shown.iter().map(|g| g.paths.clone()).collect();
    assert_eq!(paths, api_groups(api));
    assert!(
        shown
            .iter()
            .all(|g| g.keep.len() == 1 && g.keep[0] == g.paths[0]),
        "{shown:?}"
    );
    let at = shown.iter().position(|g| g.paths.contains(&want.copy_path));
    let group = shown.swap_remove(at.unwrap_or_else(|| panic!("no copy in {paths:?}")));
    let mut same = group.same.clone();
    same.sort();
    let mut pair = vec![want.chelsea_path.clone(), want.copy_path.clone()];
    pair.sort();
    assert_eq!(same, pair, "{group:?}");
    group
}

/// Clicks the copy group's "Copy paths".
fn copy_paths(b: &Browser, want: &Expected) {
    b.js(
        "[...document.querySelectorAll('#groups .group')] \
           .find(g => [...g.querySelectorAll('.path')].some(p => p.textContent === arguments[0])) \
           .querySelector('button.copy').click(); return true",
        json!([want.copy_path]),
    );
}

/// The paths in the text box of copies by hand, once it is shown, focused and selected.
fn paths_to_copy_by_hand(b: &Browser) -> String {
    let script = "const t = document.activeElement; \
                  return t.tagName === 'TEXTAREA' && !t.hidden && t.selectionStart === 0 && \
                    t.selectionEnd === t.value.length && t.value";
    let v = b.wait_for("the paths to copy by hand", script, WAIT);
    v.as_str().unwrap().to_string()
}

fn summary_has(b: &Browser, what: &str, has: &str, lacks: &str) {
    let script = format!(
        "const s = document.getElementById('dupes-summary').textContent; \
         return s.includes(' among ') && s.includes({}) && !s.includes({})",
        json!(has),
        json!(lacks)
    );
    b.wait_for(what, &script, WAIT);
}

/// The duplicates view shows the API's groups, each with one keeper; the exact copy is in a group
/// at the default distance and alone with its original at the slider's minimum (distance 0); the
/// label filter applies; "Copy paths" gives all paths but the keeper's, to the clipboard or, where
/// the browser will not, selected in a text box.
fn finds_duplicates(b: &Browser, want: &Expected) {
    b.click(&b.find("#dupes-view"));
    summary_has(
        b,
        "the duplicates",
        "within distance 0.20 among 7 images",
        "with label",
    );
    assert_eq!(text(b, "#distance-value"), "0.20");
    assert!(text(b, ".dupes .note").contains("imgvec never deletes files"));
    let group = copy_group(b, want, &want.dupes);
    let others = group.paths[1..].join("\n");

    // Into a clipboard that takes it; then where the browser refuses, into the text box.
    b.js(
        "window.copied = null; Object.defineProperty(navigator, 'clipboard', {configurable: true, \
           value: {writeText: async (t) => { window.copied = t; }}}); return true",
        json!([]),
    );
    copy_paths(b, want);
    b.wait_for("the copy", "return window.copied !== null", WAIT);
    assert_eq!(b.js("return window.copied", json!([])), others.as_str());
    b.js(
        "Object.defineProperty(navigator, 'clipboard', {configurable: true, value: undefined}); \
         return true",
        json!([]),
    );
    copy_paths(b, want);
    assert_eq!(paths_to_copy_by_hand(b), others);
    save("serve-dupes.png", &b.screenshot());

    // The slider at its minimum, by keyboard: the copy and its original, at distance 0.
    b.send_keys(&b.find("#distance"), HOME);
    summary_has(
        b,
        "the minimum distance",
        "within distance 0.02 ",
        "with label",
    );
    let group = copy_group(b, want, &want.dupes_min);
    assert_eq!(group.paths.len(), 2, "{group:?}");
    assert_eq!(group.distances, ["distance 0.000"]);
    copy_paths(b, want);
    assert_eq!(paths_to_copy_by_hand(b), group.paths[1]);
    let address = b.js("return location.search", json!([]));
    assert!(address.as_str().unwrap().contains("d=0.02"), "{address}");

    // The label filter applies to the view: no cat among the space images.
    b.click(&b.find("#label option[value=\"space\"]"));
    summary_has(b, "the space duplicates", "with label space", "Looking");
    let shown = shown_groups(b);
    assert!(
        shown.iter().all(|g| !g.paths.contains(&want.copy_path)),
        "{shown:?}"
    );
    b.click(&b.find("#label option[value=\"\"]"));
    summary_has(b, "all labels again", "within distance 0.02 ", "with label");
    copy_group(b, want, &want.dupes_min);
}

/// Another process ingests while the page is open: the counts follow within seconds, no reload.
fn sees_new_images_without_a_reload(b: &Browser, idx: &TestIndex, corpus: &Corpus) {
    let folder = corpus.dir.path().join("birds");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        fixtures().join("images/synth_small.png"),
        folder.join("small.png"),
    )
    .unwrap();
    let out = idx.run(&[
        "ingest",
        folder.to_str().unwrap(),
        "--label-from-dir",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let facts = "return document.getElementById('facts').textContent.includes('8 images')";
    b.wait_for("the new count", facts, Duration::from_secs(15));
    let birds = "return [...document.querySelectorAll('#label option')].some(o => o.textContent === 'birds (1)')";
    b.wait_for("the new label", birds, Duration::from_secs(15));
}

/// The facts line and the label filter with counts.
fn sees_the_index(b: &Browser) {
    let facts = "return document.getElementById('facts').textContent.includes('7 images')";
    b.wait_for("the index's facts", facts, WAIT);
    let facts = text(b, "#facts");
    assert!(
        facts.contains("embedded store") && facts.contains("index t-browser"),
        "{facts}"
    );
    let options = b.js(
        "return [...document.querySelectorAll('#label option')].map(o => o.textContent)",
        json!([]),
    );
    let want = json!([
        "all labels (7)",
        "things (3)",
        "space (2)",
        format!("{XSS_LABEL} (1)"),
        "cats (1)"
    ]);
    assert_eq!(options, want);
}

/// "/" focuses the box, Enter searches; the tiles are the API's hits, thumbnails load, and the
/// folder named like a tag is text with nothing in it run.
fn searches_by_text(b: &Browser, want: &Expected) {
    b.send_keys(&b.find("body"), "/");
    assert_eq!(b.js("return document.activeElement.id", json!([])), "q");
    b.send_keys(&b.find("#q"), &format!("a photo{ENTER}"));
    wait_for_tiles(b, "the text results", &want.text_ids);
    wait_for_thumbnails(b);
    let shown = tiles(b);
    for (hit, (id, name, label)) in want.by_text["hits"].as_array().unwrap().iter().zip(&shown) {
        assert_eq!(hit["id"].as_str().unwrap(), id);
        let path = hit["path"].as_str().unwrap();
        assert_eq!(Path::new(path).file_name().unwrap().to_str().unwrap(), name);
        assert_eq!(hit["label"].as_str().unwrap(), label);
    }
    assert!(
        text(b, "#summary").contains("7 results"),
        "{}",
        text(b, "#summary")
    );
    assert!(shown.iter().any(|t| t.2 == XSS_LABEL), "{shown:?}");
    let injected = b.js(
        "return document.querySelectorAll('[onerror], img[src=\"x\"]').length",
        json!([]),
    );
    assert_eq!(injected, 0);
    let copies = b.js(
        "return [...document.querySelectorAll('.tile .copies')].map(c => \
           [c.closest('.tile').dataset.id, c.textContent, c.title])",
        json!([]),
    );
    assert_eq!(copies[0][0], want.chelsea.as_str(), "{copies}");
    assert_eq!(copies[0][1], "+1 copy");
    assert!(
        copies[0][2].as_str().unwrap().ends_with(&want.copy_path),
        "{copies}"
    );
    assert_eq!(copies.as_array().unwrap().len(), 1, "{copies}");
    save("serve-desktop.png", &b.screenshot());
}

/// An uploaded image finds itself first; opened large it shows its path and distance 0; "more
/// like this" searches with its stored vector and leaves it out.
fn searches_by_upload_and_opens_a_result(b: &Browser, want: &Expected) {
    b.clear(&b.find("#q"));
    b.send_keys(&b.find("#file"), &want.chelsea_path);
    wait_first_tile(b, "the upload's results", &want.chelsea);
    assert_eq!(
        b.js(
            "return !document.getElementById('example').hidden",
            json!([])
        ),
        true
    );
    b.click(&b.find(".tile"));
    wait_viewer(b, "the viewer", true);
    assert_eq!(text(b, "#viewer-path"), want.chelsea_path);
    assert_eq!(text(b, "#viewer-label"), "cats");
    assert_eq!(text(b, "#viewer-copies"), want.copy_path);
    let distance = text(b, "#viewer-distance");
    assert!(distance.starts_with("0.0"), "{distance}");
    b.wait_for(
        "the large image",
        "const i = document.getElementById('viewer-img'); \
         return i.complete && i.naturalWidth > 0 && i.src.includes('/image/')",
        WAIT,
    );
    save("serve-viewer.png", &b.screenshot());
    b.click(&b.find("#more"));
    wait_for_tiles(b, "more like this", &want.similar);
    assert!(!tile_ids(b).contains(&want.chelsea));
    let summary = text(b, "#summary");
    assert!(summary.contains("more like chelsea.png"), "{summary}");
}

/// The label filter refines the query shown; Enter opens a tile, → steps, Esc closes.
fn refines_by_label_and_keyboard(b: &Browser, want: &Expected) {
    b.click(&b.find("#label option[value=\"space\"]"));
    wait_for_tiles(b, "the space results", &want.similar_space);
    assert!(tiles(b).iter().all(|t| t.2 == "space"));
    wait_for_thumbnails(b);
    b.click(&b.find("#label option[value=\"\"]"));
    wait_for_tiles(b, "all labels again", &want.similar);
    b.send_keys(&b.find(".tile"), ENTER);
    wait_viewer(b, "the viewer by keyboard", true);
    let before = text(b, "#viewer-name");
    b.send_keys(&b.find("#more"), RIGHT);
    let next = format!(
        "return document.getElementById('viewer-name').textContent !== {}",
        json!(before)
    );
    b.wait_for("the next image", &next, WAIT);
    b.send_keys(&b.find("#more"), ESCAPE);
    wait_viewer(b, "the viewer to close", false);
}

/// A dropped and a pasted image each search by themselves; a query that is only a minus is
/// refused in words.
fn drops_pastes_and_reads_errors(b: &Browser, want: &Expected) {
    b.click(&b.find("#example-clear"));
    hand_over_image(b, "drop", &want.astronaut);
    wait_first_tile(b, "the dropped image's results", &want.astronaut);
    hand_over_image(b, "paste", &want.chelsea);
    wait_first_tile(b, "the pasted image's results", &want.chelsea);
    b.click(&b.find("#example-clear"));
    b.send_keys(&b.find("#q"), &format!("-dark{ENTER}"));
    let shown = "const m = document.getElementById('message'); \
                 return !m.hidden && m.textContent.includes('only subtracts')";
    b.wait_for("the error message", shown, WAIT);
}

/// A search with a max distance: back from the duplicates, fewer hits, all within it.
fn cuts_off_by_distance(b: &Browser, want: &Expected) {
    b.send_keys(&b.find("#cutoff"), &want.cut_off);
    b.clear(&b.find("#q"));
    b.send_keys(&b.find("#q"), &format!("a photo{ENTER}"));
    wait_for_tiles(b, "the results within the cut-off", &want.cut_ids);
    let shown = "return document.getElementById('results').offsetParent !== null && \
                 document.getElementById('dupes').offsetParent === null && \
                 document.getElementById('dupes-view').getAttribute('aria-pressed') === 'false'";
    assert_eq!(b.js(shown, json!([])), true);
    let summary = text(b, "#summary");
    assert!(
        summary.contains(&format!("within distance {}", want.cut_off)),
        "{summary}"
    );
    let address = b.js("return location.search", json!([]));
    assert!(
        address.as_str().unwrap().contains("max_distance="),
        "{address}"
    );
    b.clear(&b.find("#cutoff"));
}

/// At phone width nothing is wider than the screen, results or duplicates.
fn fits_a_phone(b: &Browser, want: &Expected) {
    b.clear(&b.find("#q"));
    b.send_keys(&b.find("#q"), &format!("a photo{ENTER}"));
    wait_for_tiles(b, "the text results again", &want.text_ids);
    b.set_window(390, 844);
    let overflow = b.js(
        "return document.documentElement.scrollWidth - window.innerWidth",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page is wider than a phone by {overflow} px"
    );
    wait_for_thumbnails(b);
    save("serve-phone.png", &b.screenshot());
    b.click(&b.find("#dupes-view"));
    summary_has(b, "the duplicates at phone width", " among ", "with label");
    let overflow = b.js(
        "return document.documentElement.scrollWidth - window.innerWidth",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the duplicates are wider than a phone by {overflow} px"
    );
}
