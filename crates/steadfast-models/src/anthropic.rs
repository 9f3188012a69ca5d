//! Placeholder, replaced by the real provider.

use futures::future::BoxFuture;
use steadfast_core::{Message, Model, ModelError, ModelRequestParams, ModelResponse, ModelSettings};

use crate::http::ClientConfig;

/// The provider's model.
#[derive(Debug)]
pub struct AnthropicModel {
    name: String,
    provider: String,
}

impl AnthropicModel {
    /// From the environment.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        Self::with_config(name, ClientConfig::new("http://127.0.0.1"))
    }

    /// With a configuration.
    pub fn with_config(name: &str, _config: ClientConfig) -> Result<Self, ModelError> {
        Ok(Self { name: name.to_string(), provider: "x".into() })
    }

    /// Another provider name.
    pub fn with_provider_name(mut self, p: &str) -> Self {
        self.provider = p.to_string();
        self
    }
}

impl Model for AnthropicModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        &self.provider
    }

    fn request<'a>(
        &'a self,
        _messages: &'a [Message],
        _params: &'a ModelRequestParams,
        _settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async { Err(ModelError::Config("not yet".into())) })
    }
}
