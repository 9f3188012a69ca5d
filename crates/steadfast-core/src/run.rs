//! The agent loop as a sans-IO state machine.
//!
//! [`AgentRun`] never calls a model or a tool. It says what it needs next ([`Action`]) and is told
//! what happened ([`AgentRun::model_responded`], [`AgentRun::tools_returned`]). Drivers do the
//! calling; see [`crate::driver`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::AgentError;
use crate::messages::{Message, ModelRequest, ModelResponse, RequestPart, ToolCallPart};
use crate::model::{ModelRequestParams, OutputMode};
use crate::output::{OUTPUT_TOOL_NAME, OutputSpec};
use crate::tool::{ToolOutcome, ToolResult};
use crate::usage::{Usage, UsageLimits};

/// Checks a typed output; `Err(ToolError::Retry(..))` sends the model back to try again.
pub type OutputValidator<D, O> = Arc<dyn Fn(&D, &O) -> Result<(), crate::ToolError> + Send + Sync>;

/// What the loop needs next.
#[derive(Debug)]
pub enum Action {
    /// Send [`AgentRun::messages`] to the model with these parameters.
    CallModel,
    /// Run these function-tool calls (concurrently if you like) and report their outcomes in the
    /// same order.
    CallTools(Vec<ToolCallPart>),
    /// The run is over; take the result with [`AgentRun::finish`].
    Finished,
}

/// The state of one agent run.
pub struct AgentRun<D, O> {
    pub(crate) deps: Arc<D>,
    messages: Vec<Message>,
    new_start: usize,
    usage: Usage,
    limits: UsageLimits,
    params: ModelRequestParams,
    output: OutputSpec<O>,
    validators: Vec<OutputValidator<D, O>>,
    function_tools: HashMap<String, u32>,
    tool_retries: HashMap<String, u32>,
    output_retries: u32,
    max_output_retries: u32,
    pending: Option<PendingTools>,
    result: Option<O>,
    instructions: Option<String>,
}

struct PendingTools {
    calls: Vec<ToolCallPart>,
    /// Parts already decided (retry prompts for unknown tools, output-tool problems).
    extra: Vec<RequestPart>,
}

/// The static facts a run starts from.
pub(crate) struct RunSetup<D, O> {
    pub deps: Arc<D>,
    pub history: Vec<Message>,
    pub prompt: Option<String>,
    pub instructions: Option<String>,
    pub limits: UsageLimits,
    pub params: ModelRequestParams,
    pub output: OutputSpec<O>,
    pub validators: Vec<OutputValidator<D, O>>,
    pub function_tools: HashMap<String, u32>,
    pub max_output_retries: u32,
}

impl<D, O: serde::de::DeserializeOwned + schemars::JsonSchema> AgentRun<D, O> {
    pub(crate) fn new(s: RunSetup<D, O>) -> Self {
        let mut messages = s.history;
        let new_start = messages.len();
        let mut req = ModelRequest {
            parts: Vec::new(),
            instructions: s.instructions.clone(),
        };
        if let Some(p) = s.prompt {
            req.parts.push(RequestPart::UserPrompt { content: p });
        }
        messages.push(Message::Request(req));
        AgentRun {
            deps: s.deps,
            messages,
            new_start,
            usage: Usage::default(),
            limits: s.limits,
            params: s.params,
            output: s.output,
            validators: s.validators,
            function_tools: s.function_tools,
            tool_retries: HashMap::new(),
            output_retries: 0,
            max_output_retries: s.max_output_retries,
            pending: None,
            result: None,
            instructions: s.instructions,
        }
    }

    /// The conversation so far (what the next model request sends).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The request parameters (tools, output mode).
    pub fn params(&self) -> &ModelRequestParams {
        &self.params
    }

    /// Usage so far.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Model requests so far.
    pub fn run_step(&self) -> u32 {
        self.usage.requests
    }

    /// Retries of `tool` so far.
    pub fn tool_retries(&self, tool: &str) -> u32 {
        self.tool_retries.get(tool).copied().unwrap_or(0)
    }

    /// What to do next.
    pub fn next_action(&mut self) -> Result<Action, AgentError> {
        if self.result.is_some() {
            return Ok(Action::Finished);
        }
        if let Some(p) = &self.pending {
            if !p.calls.is_empty() {
                self.limits
                    .check_tool_calls(&self.usage, p.calls.len() as u32)
                    .map_err(AgentError::UsageLimitExceeded)?;
                return Ok(Action::CallTools(p.calls.clone()));
            }
            // Nothing to run: only retry prompts to send.
            let p = self.pending.take().unwrap_or(PendingTools {
                calls: vec![],
                extra: vec![],
            });
            self.push_request(p.extra);
        }
        self.limits
            .check_before_request(&self.usage)
            .map_err(AgentError::UsageLimitExceeded)?;
        Ok(Action::CallModel)
    }

    fn push_request(&mut self, parts: Vec<RequestPart>) {
        self.messages.push(Message::Request(ModelRequest {
            parts,
            instructions: self.instructions.clone(),
        }));
    }

    fn output_retry(
        &mut self,
        call: Option<&ToolCallPart>,
        message: String,
    ) -> Result<RequestPart, AgentError> {
        self.output_retries += 1;
        if self.output_retries > self.max_output_retries {
            return Err(AgentError::OutputRetriesExceeded {
                max_retries: self.max_output_retries,
                last_error: message,
            });
        }
        Ok(RequestPart::RetryPrompt {
            tool_name: call.map(|c| c.tool_name.clone()),
            tool_call_id: call.map(|c| c.tool_call_id.clone()),
            content: RequestPart::retry_text(&message),
        })
    }

    fn validate(&self, output: &O) -> Result<(), String> {
        for v in &self.validators {
            match v(&self.deps, output) {
                Ok(()) => {}
                Err(crate::ToolError::Retry(m)) => return Err(m),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// Record the model's response.
    pub fn model_responded(&mut self, mut response: ModelResponse) -> Result<(), AgentError> {
        response.usage.requests = response.usage.requests.max(1);
        self.usage += &response.usage;
        self.messages.push(Message::Response(response.clone()));
        self.limits
            .check_tokens(&self.usage)
            .map_err(AgentError::UsageLimitExceeded)?;

        let calls: Vec<ToolCallPart> = response.tool_calls().cloned().collect();
        let mut extra = Vec::new();
        let mut function_calls = Vec::new();
        let mut final_call = None;
        for call in &calls {
            if call.tool_name == OUTPUT_TOOL_NAME && self.output.mode == OutputMode::Tool {
                if final_call.is_some() {
                    extra.push(skipped(
                        call,
                        "Output tool not used - a final result was already processed.",
                    ));
                    continue;
                }
                match self.output.parse_tool_args(&call.args).and_then(|o| {
                    self.validate(&o)?;
                    Ok(o)
                }) {
                    Ok(o) => final_call = Some((call.clone(), o)),
                    Err(msg) => extra.push(self.output_retry(Some(call), msg)?),
                }
            } else if self.function_tools.contains_key(&call.tool_name) {
                function_calls.push(call.clone());
            } else {
                let names: Vec<&str> = self.params.all_tools().map(|t| t.name.as_str()).collect();
                let msg = format!(
                    "Unknown tool name: '{}'. Available tools: {}",
                    call.tool_name,
                    names.join(", ")
                );
                extra.push(self.output_retry(Some(call), msg)?);
            }
        }

        if let Some((call, output)) = final_call {
            // End early: the other calls are answered as not run, so the history stays valid.
            let mut parts = vec![RequestPart::ToolReturn {
                tool_name: call.tool_name.clone(),
                tool_call_id: call.tool_call_id.clone(),
                content: "Final result processed.".into(),
            }];
            for c in &function_calls {
                parts.push(skipped(
                    c,
                    "Tool not executed - a final result was already processed.",
                ));
            }
            parts.extend(extra);
            self.push_request(parts);
            self.result = Some(output);
            return Ok(());
        }

        if !function_calls.is_empty() || !extra.is_empty() {
            self.pending = Some(PendingTools {
                calls: function_calls,
                extra,
            });
            return Ok(());
        }

        // No tool calls at all: text.
        let text = response.text_content();
        let outcome = match self.output.mode {
            OutputMode::Tool => Err(if text.trim().is_empty() {
                "Please return a response by calling the final_result tool.".to_string()
            } else {
                "Plain text responses are not permitted, please include your response in a tool call".to_string()
            }),
            OutputMode::Text | OutputMode::Native => {
                if text.trim().is_empty() && self.output.mode == OutputMode::Text {
                    Err("Please return a non-empty text response.".to_string())
                } else {
                    self.output.parse_text(&text).and_then(|o| {
                        self.validate(&o)?;
                        Ok(o)
                    })
                }
            }
        };
        match outcome {
            Ok(o) => self.result = Some(o),
            Err(msg) => {
                let part = self.output_retry(None, msg)?;
                self.push_request(vec![part]);
            }
        }
        Ok(())
    }

    /// Record the outcomes of the calls from [`Action::CallTools`], in the same order.
    pub fn tools_returned(
        &mut self,
        outcomes: Vec<(ToolCallPart, ToolOutcome)>,
    ) -> Result<(), AgentError> {
        let pending = self.pending.take().unwrap_or(PendingTools {
            calls: vec![],
            extra: vec![],
        });
        let mut parts = Vec::with_capacity(outcomes.len() + pending.extra.len());
        for (call, outcome) in outcomes {
            self.usage.tool_calls += 1;
            self.usage += &outcome.usage;
            match outcome.result {
                ToolResult::Return(content) => parts.push(RequestPart::ToolReturn {
                    tool_name: call.tool_name,
                    tool_call_id: call.tool_call_id,
                    content,
                }),
                ToolResult::Retry(msg) => {
                    let max = self
                        .function_tools
                        .get(&call.tool_name)
                        .copied()
                        .unwrap_or(1);
                    let n = self.tool_retries.entry(call.tool_name.clone()).or_default();
                    *n += 1;
                    if *n > max {
                        return Err(AgentError::ToolRetriesExceeded {
                            tool: call.tool_name,
                            max_retries: max,
                            last_error: msg,
                        });
                    }
                    parts.push(RequestPart::RetryPrompt {
                        tool_name: Some(call.tool_name),
                        tool_call_id: Some(call.tool_call_id),
                        content: RequestPart::retry_text(&msg),
                    });
                }
            }
        }
        parts.extend(pending.extra);
        self.push_request(parts);
        Ok(())
    }

    /// The result, once [`Action::Finished`] was returned.
    pub fn finish(self) -> Result<RunResult<O>, AgentError> {
        match self.result {
            Some(output) => Ok(RunResult {
                output,
                messages: self.messages,
                new_messages_start: self.new_start,
                usage: self.usage,
            }),
            None => Err(AgentError::Config("the run has not finished".into())),
        }
    }
}

fn skipped(call: &ToolCallPart, why: &str) -> RequestPart {
    RequestPart::ToolReturn {
        tool_name: call.tool_name.clone(),
        tool_call_id: call.tool_call_id.clone(),
        content: why.into(),
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunResult<O> {
    /// The typed output.
    pub output: O,
    /// The whole conversation, history included.
    pub messages: Vec<Message>,
    /// Where this run's messages start in `messages`.
    pub new_messages_start: usize,
    /// Usage of this run, nested agent runs included.
    pub usage: Usage,
}

impl<O> RunResult<O> {
    /// The messages this run added.
    pub fn new_messages(&self) -> &[Message] {
        &self.messages[self.new_messages_start..]
    }

    /// The whole conversation as JSON, to store and pass back as history later.
    pub fn messages_json(&self) -> String {
        serde_json::to_string(&self.messages).unwrap_or_default()
    }
}
