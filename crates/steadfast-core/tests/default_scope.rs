//! Plain runs inside `with_default_scope` go through the installed scope.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use steadfast_core::{
    Agent, AgentError, Driver, ModelCall, ModelResponse, PlainDriver, Scope, TestModel, ToolCall,
    ToolOutcome, Usage, with_default_scope,
};

#[derive(Default)]
struct Watcher {
    runs: Mutex<Vec<String>>,
    usage: Mutex<Usage>,
}

struct WatchingDriver(Arc<Watcher>);

impl Driver for WatchingDriver {
    fn child(&self, name: &str) -> Arc<dyn Driver> {
        self.0.runs.lock().unwrap().push(name.to_string());
        Arc::new(WatchingDriver(self.0.clone()))
    }

    fn model_request<'a>(
        &'a self,
        call: ModelCall<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        PlainDriver.model_request(call)
    }

    fn tool_call<'a>(
        &'a self,
        call: ToolCall<'a>,
    ) -> BoxFuture<'a, Result<ToolOutcome, AgentError>> {
        PlainDriver.tool_call(call)
    }
}

struct WatchingScope(Arc<Watcher>);

impl Scope for WatchingScope {
    fn driver(&self) -> Arc<dyn Driver> {
        Arc::new(WatchingDriver(self.0.clone()))
    }

    fn record_usage(&self, usage: &Usage) {
        *self.0.usage.lock().unwrap() += usage;
    }
}

#[tokio::test]
async fn plain_runs_use_the_default_scope_of_their_task() {
    let agent = Agent::<(), String>::builder("plain")
        .model(TestModel::new())
        .build()
        .unwrap();
    let watcher = Arc::new(Watcher::default());
    let scope = Arc::new(WatchingScope(watcher.clone()));
    with_default_scope(scope, async {
        agent.run("one", ()).await.unwrap();
        agent.run_stream("two", ()).output().await.unwrap();
    })
    .await;
    assert_eq!(*watcher.runs.lock().unwrap(), ["plain", "plain"]);
    assert_eq!(watcher.usage.lock().unwrap().requests, 2);
    // Outside the scope, nothing is watched.
    agent.run("three", ()).await.unwrap();
    assert_eq!(watcher.runs.lock().unwrap().len(), 2);
}
