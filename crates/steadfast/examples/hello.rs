//! Hello, agent: a model, instructions, a prompt, an answer.
//!
//! ```sh
//! cargo run -p steadfast --example hello
//! ```
//!
//! Offline, a small function plays the model. With `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` or
//! `GEMINI_API_KEY` set, a real model answers instead.

mod common;

use steadfast::FunctionModel;
use steadfast::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The offline stand-in for a model: it reads the name in the prompt and greets it.
    let offline = FunctionModel::new(|messages, _params| {
        let name = common::user_prompt(messages)
            .rsplit(' ')
            .next()
            .unwrap_or("there");
        Ok(ModelResponse::text(format!(
            "Hello, {}! Nice to meet you.",
            name.trim_end_matches('.')
        )))
    });

    let agent = Agent::<(), String>::builder("greeter")
        .model(common::model(offline))
        .instructions("Greet the user by name, in one short sentence.")
        .build()?;
    let result = agent.run("Hi, my name is Ada.", ()).await?;
    println!("{}", result.output);
    println!(
        "({} request, {} tokens)",
        result.usage.requests,
        result.usage.total_tokens()
    );
    Ok(())
}
