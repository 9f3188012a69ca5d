//! Snapshot tests of the console tree, for a fixed run: a plain agent run with a tool that runs a
//! nested agent, and the same agent inside a durable workflow that is interrupted and resumed
//! (its agent steps replayed). Durations are left out so the output is the same every time.
//!
//! Each test installs its subscriber on its own thread only, and runs a current-thread runtime,
//! so the worker's tasks report to it and the tests do not see each other's spans.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use steadfast_durable::Engine;
use steadfast_otel::ConsoleLayer;
use tracing_subscriber::layer::SubscriberExt;

/// A `Write` into shared memory.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Run `f` on a current-thread runtime with the console layer (no durations) as this thread's
/// subscriber; return what it printed.
fn with_console<F: std::future::Future<Output = ()>>(f: F) -> String {
    let buf = Buffer::default();
    let layer = ConsoleLayer::with_writer(buf.clone()).with_durations(false);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
    buf.text()
}

#[test]
fn plain_run_with_a_nested_agent() {
    let out = with_console(async {
        let r = common::planner().run(common::PROMPT, ()).await.unwrap();
        assert_eq!(r.output, common::FINAL_ANSWER);
    });
    let expected = "\
▸ invoke_agent planner  model=plan-model
  • chat plan-model  in 100 · out 20 tokens · $0.001200
  ▸ execute_tool lookup
    ▸ invoke_agent searcher  model=search-model
      • chat search-model  in 30 · out 6 tokens · $0.000300
    ✓ invoke_agent searcher  1 request · in 30 · out 6 tokens · $0.000300
  ✓ execute_tool lookup
  • chat plan-model  in 100 · out 20 tokens · $0.001200
✓ invoke_agent planner  3 requests · in 230 · out 46 tokens · $0.002700
";
    assert_eq!(out, expected, "\n--- got ---\n{out}");
}

#[test]
fn durable_run_interrupted_and_replayed() {
    let out = with_console(async {
        let path = common::temp_db("console");
        let engine = Engine::new(steadfast_sqlite::SqliteStore::open(&path).unwrap());
        let (output, published) = common::interrupted_research(&engine, "research-1").await;
        assert_eq!(output, format!("{} (approved)", common::FINAL_ANSWER));
        assert_eq!(published, 1);
        common::remove_db(&path);
    });
    let expected = "\
▸ workflow research  id=research-1
  ▸ invoke_agent planner  model=plan-model
    • chat plan-model  (step planner#1/model_request#1)  in 100 · out 20 tokens · $0.001200
    ▸ execute_tool lookup  (step planner#1/tool__lookup#1)
      ▸ invoke_agent searcher  model=search-model
        • chat search-model  (step planner#1/tool__lookup#1/searcher#1/model_request#1)  in 30 · out 6 tokens · $0.000300
      ✓ invoke_agent searcher  1 request · in 30 · out 6 tokens · $0.000300
    ✓ execute_tool lookup
    • chat plan-model  (step planner#1/model_request#2)  in 100 · out 20 tokens · $0.001200
  ✓ invoke_agent planner  3 requests · in 230 · out 46 tokens · $0.002700
  … step recv__go#1  unfinished
✓ workflow research  suspended · 0 replayed, 4 run · 3 requests · in 230 · out 46 tokens · $0.002700
▸ workflow research  id=research-1
  ▸ invoke_agent planner  model=plan-model
    ↺ step planner#1/model_request#1  replayed
    ↺ step planner#1/tool__lookup#1  replayed
    ↺ step planner#1/model_request#2  replayed
  ✓ invoke_agent planner  3 requests · in 230 · out 46 tokens · $0.002700
  • step recv__go#1
  • step publish#1
✓ workflow research  completed · 3 replayed, 2 run · 3 requests · in 230 · out 46 tokens · $0.002700
";
    assert_eq!(out, expected, "\n--- got ---\n{out}");
}
