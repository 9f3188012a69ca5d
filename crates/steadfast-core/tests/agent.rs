//! The agent loop through the public API, with models played by functions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast_core::*;

#[derive(Debug, Deserialize, JsonSchema)]
/// Get the weather for a city.
struct WeatherArgs {
    /// The city.
    city: String,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct City {
    name: String,
    country: String,
}

fn last_request(messages: &[Message]) -> &ModelRequest {
    messages
        .iter()
        .rev()
        .find_map(Message::as_request)
        .expect("a request")
}

fn tool_returns(messages: &[Message]) -> Vec<serde_json::Value> {
    last_request(messages)
        .parts
        .iter()
        .filter_map(|p| match p {
            RequestPart::ToolReturn { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

fn weather_tool() -> Tool<()> {
    Tool::plain("get_weather", |a: WeatherArgs| async move {
        Ok(format!("sunny in {}", a.city))
    })
}

#[tokio::test]
async fn text_run_with_instructions_and_usage() {
    let model = FunctionModel::new(|messages, params| {
        let req = last_request(messages);
        assert_eq!(
            req.instructions.as_deref(),
            Some("Be brief.\n\nUser is Ada.")
        );
        assert_eq!(params.output_mode, OutputMode::Text);
        Ok(ModelResponse::text("Hello Ada"))
    });
    let agent = Agent::<String, String>::builder("greeter")
        .model(model)
        .instructions("Be brief.")
        .instructions_fn(|name: &String| format!("User is {name}."))
        .build()
        .unwrap();
    let r = agent.run("hi", "Ada".to_string()).await.unwrap();
    assert_eq!(r.output, "Hello Ada");
    assert_eq!(r.usage.requests, 1);
    assert!(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
    assert_eq!(r.new_messages().len(), 2);
}

#[tokio::test]
async fn tool_schema_comes_from_the_argument_type_and_results_go_back() {
    let model = FunctionModel::new(|messages, params| {
        let def = &params.function_tools[0];
        assert_eq!(
            def.description.as_deref(),
            Some("Get the weather for a city.")
        );
        assert_eq!(
            def.parameters["properties"]["city"]["description"],
            "The city."
        );
        let returns = tool_returns(messages);
        if returns.is_empty() {
            Ok(ModelResponse::tool_call(
                "get_weather",
                json!({"city": "Paris"}),
            ))
        } else {
            Ok(ModelResponse::text(format!(
                "It is {}",
                returns[0].as_str().unwrap()
            )))
        }
    });
    let agent = Agent::<(), String>::builder("weather")
        .model(model)
        .tool(weather_tool())
        .build()
        .unwrap();
    let r = agent.run("weather?", ()).await.unwrap();
    assert_eq!(r.output, "It is sunny in Paris");
    assert_eq!(r.usage.requests, 2);
    assert_eq!(r.usage.tool_calls, 1);
}

#[tokio::test]
async fn invalid_arguments_and_model_retry_go_back_to_the_model_within_budget() {
    // First call has bad args (schema miss), second asks for a retry from the tool, third works.
    let model = FunctionModel::new(|messages, _| {
        let n = messages
            .iter()
            .filter(|m| m.as_response().is_some())
            .count();
        Ok(match n {
            0 => ModelResponse::tool_call("pick", json!({"n": "not a number"})),
            1 => ModelResponse::tool_call("pick", json!({"n": 13})),
            2 => ModelResponse::tool_call("pick", json!({"n": 7})),
            _ => ModelResponse::text("done"),
        })
    });
    #[derive(Deserialize, JsonSchema)]
    struct Pick {
        n: u32,
    }
    let tool = Tool::<()>::plain("pick", |p: Pick| async move {
        if p.n == 13 {
            Err(ToolError::retry("13 is unlucky, pick another"))
        } else {
            Ok(p.n)
        }
    })
    .max_retries(2);
    let agent = Agent::<(), String>::builder("picker")
        .model(model.clone())
        .tool(tool.clone())
        .build()
        .unwrap();
    let r = agent.run("pick", ()).await.unwrap();
    assert_eq!(r.output, "done");
    let retries: Vec<String> = r
        .messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|q| q.parts.iter())
        .filter_map(|p| match p {
            RequestPart::RetryPrompt { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries[0].contains("invalid arguments"), "{}", retries[0]);
    assert!(retries[1].starts_with("13 is unlucky"));
    assert!(retries[1].ends_with("Fix the errors and try again."));

    // With a budget of 1 the same conversation fails clearly.
    let strict = Agent::<(), String>::builder("picker")
        .model(model)
        .tool(tool.max_retries(1))
        .build()
        .unwrap();
    let err = strict.run("pick", ()).await.unwrap_err();
    assert!(
        matches!(&err, AgentError::ToolRetriesExceeded { tool, max_retries: 1, .. } if tool == "pick"),
        "{err}"
    );
}

#[tokio::test]
async fn structured_output_in_tool_mode_with_validator_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let model = FunctionModel::new(|messages, params| {
        assert_eq!(params.output_mode, OutputMode::Tool);
        assert!(!params.allow_text_output);
        assert_eq!(params.output_tools[0].name, "final_result");
        let n = messages
            .iter()
            .filter(|m| m.as_response().is_some())
            .count();
        Ok(match n {
            0 => ModelResponse::text("Paris, France"),
            1 => ModelResponse::tool_call("final_result", json!({"name": "paris"})),
            2 => ModelResponse::tool_call(
                "final_result",
                json!({"name": "paris", "country": "France"}),
            ),
            _ => ModelResponse::tool_call(
                "final_result",
                json!({"name": "Paris", "country": "France"}),
            ),
        })
    });
    let seen = calls.clone();
    let agent = Agent::<(), City>::builder("geo")
        .model(model)
        .output_retries(3)
        .output_validator(move |_, c: &City| {
            seen.fetch_add(1, Ordering::SeqCst);
            if c.name.chars().next().is_some_and(char::is_lowercase) {
                Err(ToolError::retry("capitalize the name"))
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    let r = agent.run("where?", ()).await.unwrap();
    assert_eq!(
        r.output,
        City {
            name: "Paris".into(),
            country: "France".into()
        }
    );
    assert_eq!(r.usage.requests, 4);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn native_output_mode_parses_json_text_and_enum_outputs_wrap() {
    let model = FunctionModel::new(|_, params| {
        let schema = params.output_schema.as_ref().expect("schema");
        assert_eq!(schema.schema["type"], "object");
        Ok(ModelResponse::text(
            "```json\n{\"name\":\"Lima\",\"country\":\"Peru\"}\n```",
        ))
    });
    let agent = Agent::<(), City>::builder("geo")
        .model(model)
        .output_mode(OutputMode::Native)
        .build()
        .unwrap();
    assert_eq!(agent.run("x", ()).await.unwrap().output.name, "Lima");

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Answer {
        Yes,
        No,
    }
    let model = FunctionModel::new(|_, params| {
        assert!(params.output_tools[0].parameters["properties"]["response"]["enum"].is_array());
        Ok(ModelResponse::tool_call(
            "final_result",
            json!({"response": "no"}),
        ))
    });
    let agent = Agent::<(), Answer>::builder("yn")
        .model(model)
        .build()
        .unwrap();
    assert_eq!(agent.run("?", ()).await.unwrap().output, Answer::No);
}

#[tokio::test]
async fn usage_limits_stop_the_run() {
    let model = FunctionModel::new(|_, _| {
        Ok(ModelResponse::tool_call(
            "get_weather",
            json!({"city": "x"}),
        ))
    });
    let agent = Agent::<(), String>::builder("loop")
        .model(model)
        .tool(weather_tool())
        .usage_limits(UsageLimits {
            request_limit: Some(3),
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = agent.run("go", ()).await.unwrap_err();
    assert!(
        matches!(err, AgentError::UsageLimitExceeded(ref m) if m.contains("request limit of 3")),
        "{err}"
    );
}

#[tokio::test]
async fn message_history_round_trips_and_continues() {
    let model = FunctionModel::new(|messages, _| {
        let users = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| r.parts.iter())
            .filter(|p| matches!(p, RequestPart::UserPrompt { .. }))
            .count();
        Ok(ModelResponse::text(format!("turn {users}")))
    });
    let agent = Agent::<(), String>::builder("chat")
        .model(model)
        .build()
        .unwrap();
    let first = agent.run("one", ()).await.unwrap();
    let json = first.messages_json();
    let history: Vec<Message> = serde_json::from_str(&json).unwrap();
    assert_eq!(history, first.messages);
    let second = agent
        .run_with(
            "two",
            (),
            RunOptions {
                message_history: history,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.output, "turn 2");
    assert_eq!(second.new_messages().len(), 2);
}

#[tokio::test]
async fn parallel_tool_calls_run_concurrently_and_keep_order() {
    let model = FunctionModel::new(|messages, _| {
        let returns = tool_returns(messages);
        if returns.is_empty() {
            Ok(ModelResponse {
                parts: (0..4)
                    .map(|i| {
                        ResponsePart::tool_call(
                            "slow",
                            json!({"ms": 40 - i * 10}).to_string(),
                            format!("c{i}"),
                        )
                    })
                    .collect(),
                ..Default::default()
            })
        } else {
            Ok(ModelResponse::text(
                serde_json::to_string(&returns).unwrap(),
            ))
        }
    });
    #[derive(Deserialize, JsonSchema)]
    struct Slow {
        ms: u64,
    }
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (now.clone(), max.clone());
    let agent = Agent::<(), String>::builder("par")
        .model(model)
        .tool(Tool::plain("slow", move |s: Slow| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let inside = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(inside, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(s.ms)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(s.ms)
            }
        }))
        .build()
        .unwrap();
    let r = agent.run("go", ()).await.unwrap();
    // Results in call order although the first call finishes last.
    assert_eq!(r.output, "[40,30,20,10]");
    // All four were inside the tool at once.
    assert_eq!(max.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn delegation_adds_inner_usage_to_the_outer_run() {
    let inner_model = FunctionModel::new(|_, _| Ok(ModelResponse::text("four")));
    let inner = Agent::<(), String>::builder("inner")
        .model(inner_model)
        .build()
        .unwrap();
    let outer_model = FunctionModel::new(|messages, _| {
        let returns = tool_returns(messages);
        if returns.is_empty() {
            Ok(ModelResponse::tool_call("ask", json!({"q": "2+2?"})))
        } else {
            Ok(ModelResponse::text(
                returns[0].as_str().unwrap().to_string(),
            ))
        }
    });
    #[derive(Deserialize, JsonSchema)]
    struct Ask {
        q: String,
    }
    let inner2 = inner.clone();
    let outer = Agent::<(), String>::builder("outer")
        .model(outer_model)
        .tool(Tool::new("ask", move |ctx: ToolCtx<()>, a: Ask| {
            let inner = inner2.clone();
            async move { Ok(inner.run_in(&ctx, a.q, ()).await?.output) }
        }))
        .build()
        .unwrap();
    let r = outer.run("go", ()).await.unwrap();
    assert_eq!(r.output, "four");
    assert_eq!(r.usage.requests, 3, "{:?}", r.usage);
}

#[tokio::test]
async fn run_stream_yields_events_then_the_output() {
    let model = FunctionModel::new(|messages, _| {
        if tool_returns(messages).is_empty() && messages.len() == 1 {
            Ok(ModelResponse::tool_call(
                "get_weather",
                json!({"city": "Oslo"}),
            ))
        } else {
            Ok(ModelResponse::text("cold"))
        }
    });
    let agent = Agent::<(), String>::builder("s")
        .model(model)
        .tool(weather_tool())
        .build()
        .unwrap();
    let mut stream = agent.run_stream("go", ());
    let mut kinds = Vec::new();
    while let Some(ev) = stream.next().await {
        kinds.push(match ev {
            AgentEvent::Model(StreamEvent::TextDelta { .. }) => "text",
            AgentEvent::Model(StreamEvent::ToolCallDelta { .. }) => "tool_delta",
            AgentEvent::Model(_) => "other",
            AgentEvent::ToolCall(_) => "call",
            AgentEvent::ToolResult { .. } => "result",
        });
    }
    assert_eq!(kinds, ["tool_delta", "call", "result", "text"]);
    assert_eq!(stream.output().await.unwrap().output, "cold");
}

#[tokio::test]
async fn test_model_calls_every_tool_then_returns_schema_valid_output() {
    let agent = Agent::<(), City>::builder("t")
        .model(TestModel::new())
        .tool(weather_tool())
        .build()
        .unwrap();
    let r = agent.run("x", ()).await.unwrap();
    assert_eq!(r.usage.tool_calls, 1);
    assert_eq!(r.usage.requests, 2);
    assert!(!r.output.name.is_empty());
}

#[tokio::test]
async fn retryable_tool_failures_follow_the_step_policy() {
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    #[derive(Deserialize, JsonSchema)]
    struct Empty {}
    let tool = Tool::<()>::plain("flaky", move |_: Empty| {
        let f = f.clone();
        async move {
            if f.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(ToolError::failed("broken"))
            } else {
                Ok("ok")
            }
        }
    })
    .retry(RetryPolicy::attempts(4).with_initial_interval(Duration::from_millis(1)));
    let model = FunctionModel::new(|messages, _| {
        if tool_returns(messages).is_empty() {
            Ok(ModelResponse::tool_call("flaky", json!({})))
        } else {
            Ok(ModelResponse::text("fine"))
        }
    });
    let agent = Agent::<(), String>::builder("f")
        .model(model)
        .tool(tool)
        .build()
        .unwrap();
    assert_eq!(agent.run("x", ()).await.unwrap().output, "fine");
    assert_eq!(failures.load(Ordering::SeqCst), 4);

    let fatal = Tool::<()>::plain("fatal", |_: Empty| async move {
        Err::<String, _>(ToolError::fatal("no way"))
    });
    let model = FunctionModel::new(|_, _| Ok(ModelResponse::tool_call("fatal", json!({}))));
    let agent = Agent::<(), String>::builder("f")
        .model(model)
        .tool(fatal)
        .build()
        .unwrap();
    let err = agent.run("x", ()).await.unwrap_err();
    assert!(
        matches!(&err, AgentError::Tool { retryable: false, message, .. } if message == "no way"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    let no_model = Agent::<(), String>::builder("a").build().err().unwrap();
    assert!(no_model.to_string().contains("has no model"));
    let unresolved = Agent::<(), String>::builder("a")
        .model("openai:gpt-4.1")
        .build()
        .err()
        .unwrap();
    assert!(
        unresolved.to_string().contains("no provider resolver"),
        "{unresolved}"
    );
    let dup = Agent::<(), String>::builder("a")
        .model(TestModel::new())
        .tool(weather_tool())
        .tool(weather_tool())
        .build()
        .err()
        .unwrap();
    assert!(dup.to_string().contains("two tools named `get_weather`"));
}
