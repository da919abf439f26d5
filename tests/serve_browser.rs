//! The search page in a real browser: headless Chromium driven over WebDriver (chromedriver), against
//! `imgvec serve` on the embedded store with the tiny model. A person's path through the page: see
//! the index's facts, search by text, by an uploaded, dropped and pasted image, open a result, "more
//! like this", filter by label, use the keyboard, at desktop and phone width. A folder named like an
//! HTML tag must show as text. Screenshots go to target/serve-desktop.png and target/serve-phone.png.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them).

mod common;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::time::Duration;

use common::TestIndex;
use serde_json::json;
use serve::{hit_ids, Corpus, Server, XSS_LABEL};
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(60);
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";
const RIGHT: &str = "\u{E014}";

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

#[test]
fn a_person_finds_sees_and_refines_results() {
    let idx = TestIndex::local("browser");
    let corpus = Corpus::new();
    corpus.ingest(&idx);
    let server = Server::start(&idx, &[]);
    let (_, by_text) = server.search_json(&json!({"q": "a photo", "k": 24}));
    let text_ids = hit_ids(&by_text);
    assert_eq!(text_ids.len(), 7);
    let chelsea = corpus.id_of("cats", "chelsea.png");
    let astronaut = corpus.id_of("space", "astronaut.png");
    let (_, similar) = server.get_json(&format!("/api/similar/{chelsea}?k=24"));
    let (_, similar_space) = server.get_json(&format!("/api/similar/{chelsea}?k=24&label=space"));

    let b = Browser::start();
    b.goto(&server.url);
    b.wait_for(
        "the index's facts",
        "return document.getElementById('facts').textContent.includes('7 images')",
        WAIT,
    );
    let facts = text(&b, "#facts");
    assert!(
        facts.contains("embedded store") && facts.contains("index t-browser"),
        "{facts}"
    );
    let options = b.js(
        "return [...document.querySelectorAll('#label option')].map(o => o.textContent)",
        json!([]),
    );
    assert_eq!(
        options,
        json!([
            "all labels (7)",
            "things (3)",
            "space (2)",
            format!("{XSS_LABEL} (1)"),
            "cats (1)"
        ])
    );

    // Text search with the keyboard: "/" focuses the box, Enter searches.
    b.send_keys(&b.find("body"), "/");
    assert_eq!(b.js("return document.activeElement.id", json!([])), "q");
    b.send_keys(&b.find("#q"), &format!("a photo{ENTER}"));
    wait_for_tiles(&b, "the text results", &text_ids);
    wait_for_thumbnails(&b);
    let shown = tiles(&b);
    for (hit, (id, name, label)) in by_text["hits"].as_array().unwrap().iter().zip(&shown) {
        assert_eq!(hit["id"].as_str().unwrap(), id);
        let path = hit["path"].as_str().unwrap();
        assert_eq!(Path::new(path).file_name().unwrap().to_str().unwrap(), name);
        assert_eq!(hit["label"].as_str().unwrap(), label);
    }
    assert!(
        text(&b, "#summary").contains("7 results"),
        "{}",
        text(&b, "#summary")
    );

    // The folder named like a tag is text, and nothing in it ran.
    assert!(shown.iter().any(|t| t.2 == XSS_LABEL), "{shown:?}");
    let injected = b.js(
        "return document.querySelectorAll('[onerror], img[src=\"x\"]').length",
        json!([]),
    );
    assert_eq!(injected, 0);
    save("serve-desktop.png", &b.screenshot());

    // Search by an uploaded image: it finds itself first.
    b.clear(&b.find("#q"));
    let chelsea_path = corpus.path("cats", "chelsea.png");
    b.send_keys(&b.find("#file"), chelsea_path.to_str().unwrap());
    b.wait_for(
        "the upload's results",
        &format!(
            "const t = document.querySelector('.tile'); return t && t.dataset.id === '{chelsea}'"
        ),
        WAIT,
    );
    assert!(
        b.js(
            "return !document.getElementById('example').hidden",
            json!([])
        ) == true
    );

    // Open it large, then "more like this" (the stored vector; the image itself left out).
    b.click(&b.find(".tile"));
    b.wait_for(
        "the viewer",
        "return document.getElementById('viewer').open",
        WAIT,
    );
    assert_eq!(text(&b, "#viewer-path"), chelsea_path.to_str().unwrap());
    assert_eq!(text(&b, "#viewer-label"), "cats");
    assert!(
        text(&b, "#viewer-distance").starts_with("0.0"),
        "{}",
        text(&b, "#viewer-distance")
    );
    b.wait_for(
        "the large image",
        "const i = document.getElementById('viewer-img'); \
         return i.complete && i.naturalWidth > 0 && i.src.includes('/image/')",
        WAIT,
    );
    save("serve-viewer.png", &b.screenshot());
    b.click(&b.find("#more"));
    wait_for_tiles(&b, "more like this", &hit_ids(&similar));
    assert!(!tile_ids(&b).contains(&chelsea));
    assert!(
        text(&b, "#summary").contains("more like chelsea.png"),
        "{}",
        text(&b, "#summary")
    );

    // The label filter refines the same query.
    b.click(&b.find("#label option[value=\"space\"]"));
    wait_for_tiles(&b, "the space results", &hit_ids(&similar_space));
    assert!(tiles(&b).iter().all(|t| t.2 == "space"));
    wait_for_thumbnails(&b);
    b.click(&b.find("#label option[value=\"\"]"));

    // Keyboard in the viewer: Enter opens, → steps, Esc closes.
    wait_for_tiles(&b, "all labels again", &hit_ids(&similar));
    let first = b.find(".tile");
    b.send_keys(&first, ENTER);
    b.wait_for(
        "the viewer by keyboard",
        "return document.getElementById('viewer').open",
        WAIT,
    );
    let before = text(&b, "#viewer-name");
    b.send_keys(&b.find("#more"), RIGHT);
    b.wait_for(
        "the next image",
        &format!(
            "return document.getElementById('viewer-name').textContent !== {}",
            json!(before)
        ),
        WAIT,
    );
    b.send_keys(&b.find("#more"), ESCAPE);
    b.wait_for(
        "the viewer to close",
        "return !document.getElementById('viewer').open",
        WAIT,
    );

    // Drop an image on the page, then paste one: each searches by it.
    b.click(&b.find("#example-clear"));
    hand_over_image(&b, "drop", &astronaut);
    b.wait_for(
        "the dropped image's results",
        &format!(
            "const t = document.querySelector('.tile'); return t && t.dataset.id === '{astronaut}'"
        ),
        WAIT,
    );
    hand_over_image(&b, "paste", &chelsea);
    b.wait_for(
        "the pasted image's results",
        &format!(
            "const t = document.querySelector('.tile'); return t && t.dataset.id === '{chelsea}'"
        ),
        WAIT,
    );

    // An error is said in words: a query that is only a minus.
    b.click(&b.find("#example-clear"));
    b.send_keys(&b.find("#q"), &format!("-dark{ENTER}"));
    b.wait_for("the error message", "const m = document.getElementById('message'); return !m.hidden && m.textContent.includes('only subtracts')", WAIT);

    // Phone width: one narrow column, nothing wider than the screen.
    b.clear(&b.find("#q"));
    b.send_keys(&b.find("#q"), &format!("a photo{ENTER}"));
    wait_for_tiles(&b, "the text results again", &text_ids);
    b.set_window(390, 844);
    let overflow = b.js(
        "return document.documentElement.scrollWidth - window.innerWidth",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page is wider than a phone by {overflow} px"
    );
    wait_for_thumbnails(&b);
    save("serve-phone.png", &b.screenshot());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}
