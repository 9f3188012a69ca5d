//! Model providers for Steadfast.
//!
//! Every provider speaks its API over real HTTP (reqwest with rustls), takes its key and base URL
//! from the usual environment variables or from code, maps HTTP errors to [`ModelError`]s that say
//! whether a retry may help, retries 408/409/429/5xx with backoff that honours `Retry-After`, and
//! streams server-sent events through [`steadfast_core::Model::request_stream`].
//!
//! | provider | type | model string | key | base URL |
//! |---|---|---|---|---|
//! | OpenAI Chat Completions (and any compatible server) | [`OpenAIChatModel`] | `openai:gpt-4.1` | `OPENAI_API_KEY` | `OPENAI_BASE_URL` |
//! | OpenAI Responses | [`OpenAIResponsesModel`] | `openai-responses:gpt-4.1` | `OPENAI_API_KEY` | `OPENAI_BASE_URL` |
//! | Anthropic Messages | [`AnthropicModel`] | `anthropic:claude-haiku-4-5` | `ANTHROPIC_API_KEY` | `ANTHROPIC_BASE_URL` |
//! | Google Gemini | [`GeminiModel`] | `google:gemini-2.5-flash` (or `gemini:`) | `GEMINI_API_KEY` or `GOOGLE_API_KEY` | `GEMINI_BASE_URL` |
//! | Ollama | [`OpenAIChatModel`] | `ollama:llama3.2` | — | `OLLAMA_BASE_URL` (default `http://127.0.0.1:11434/v1`) |
//!
//! Call [`install`] once so that agents accept `"provider:model"` strings.

pub mod anthropic;
pub mod gemini;
pub mod http;
pub mod openai_chat;
pub mod openai_responses;
pub mod prices;
pub mod sse;
pub mod streaming;

use std::sync::Arc;

pub use anthropic::AnthropicModel;
pub use gemini::GeminiModel;
pub use http::ClientConfig;
pub use openai_chat::OpenAIChatModel;
pub use openai_responses::OpenAIResponsesModel;
pub use prices::{Price, apply_cost, price_of};
use steadfast_core::{ModelError, ModelRef, ModelResolver};

/// Resolves `"provider:model"` strings to this crate's providers, configured from the environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct StandardResolver;

impl ModelResolver for StandardResolver {
    fn resolve(&self, spec: &str) -> Result<ModelRef, ModelError> {
        infer_model(spec)
    }
}

/// Build the model that `spec` names (`openai:gpt-4.1`, `anthropic:claude-haiku-4-5`, ...).
pub fn infer_model(spec: &str) -> Result<ModelRef, ModelError> {
    let (provider, name) = spec.split_once(':').ok_or_else(|| {
        ModelError::Config(format!(
            "model `{spec}` must be written `provider:model`, e.g. `openai:gpt-4.1`"
        ))
    })?;
    if name.is_empty() {
        return Err(ModelError::Config(format!(
            "model `{spec}` has no model name"
        )));
    }
    Ok(match provider {
        "openai" | "openai-chat" => Arc::new(OpenAIChatModel::new(name)?),
        "openai-responses" => Arc::new(OpenAIResponsesModel::new(name)?),
        "anthropic" => Arc::new(AnthropicModel::new(name)?),
        "google" | "gemini" | "google-gla" => Arc::new(GeminiModel::new(name)?),
        "ollama" => {
            let cfg = ClientConfig::from_env("OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1", &[]);
            Arc::new(OpenAIChatModel::with_config(name, cfg)?.with_provider_name("ollama"))
        }
        other => {
            return Err(ModelError::Config(format!(
                "unknown provider `{other}` in `{spec}`; known: openai, openai-responses, \
                 anthropic, google (gemini), ollama"
            )));
        }
    })
}

/// Install [`StandardResolver`] so that agents accept `"provider:model"` strings. Idempotent.
pub fn install() {
    let _ = steadfast_core::set_model_resolver(Arc::new(StandardResolver));
}
