//! The offline players: a small knowledge table of objects and their properties, a questioner
//! that narrows the candidates down with yes/no questions, and an answerer that answers
//! truthfully from the table. Both are plain functions of the conversation, so they replay.

use serde_json::json;
use steadfast::{Message, ModelResponse, RequestPart, ResponsePart};

/// A yes/no property and the question that asks for it.
struct Property {
    key: &'static str,
    question: &'static str,
}

const PROPERTIES: &[Property] = &[
    Property {
        key: "alive",
        question: "Is it alive?",
    },
    Property {
        key: "animal",
        question: "Is it an animal?",
    },
    Property {
        key: "human",
        question: "Is it a person?",
    },
    Property {
        key: "plant",
        question: "Is it a plant?",
    },
    Property {
        key: "food",
        question: "Do people usually eat it?",
    },
    Property {
        key: "underground",
        question: "Does it grow underground?",
    },
    Property {
        key: "sweet",
        question: "Is it sweet?",
    },
    Property {
        key: "adult",
        question: "Is it an adult?",
    },
    Property {
        key: "female",
        question: "Is it female?",
    },
    Property {
        key: "legs",
        question: "Does it walk on legs?",
    },
    Property {
        key: "flies",
        question: "Can it fly?",
    },
    Property {
        key: "water",
        question: "Does it live in water?",
    },
    Property {
        key: "pet",
        question: "Is it a common pet?",
    },
    Property {
        key: "barks",
        question: "Does it bark?",
    },
    Property {
        key: "wheels",
        question: "Does it have wheels?",
    },
    Property {
        key: "engine",
        question: "Does it have an engine?",
    },
    Property {
        key: "big",
        question: "Is it bigger than a person?",
    },
    Property {
        key: "electronic",
        question: "Is it electronic?",
    },
    Property {
        key: "wood",
        question: "Is it usually made of wood?",
    },
    Property {
        key: "music",
        question: "Is it used to make music?",
    },
    Property {
        key: "home",
        question: "Can people live in it?",
    },
    Property {
        key: "sport",
        question: "Is it used for sport?",
    },
];

/// The objects the offline players know, with the properties that are true of them.
const OBJECTS: &[(&str, &[&str])] = &[
    ("potato", &["alive", "plant", "food", "underground"]),
    (
        "carrot",
        &["alive", "plant", "food", "underground", "sweet"],
    ),
    ("apple", &["alive", "plant", "food", "sweet"]),
    ("oak tree", &["alive", "plant", "big", "wood"]),
    ("rose", &["alive", "plant"]),
    ("dog", &["alive", "animal", "legs", "pet", "barks"]),
    ("cat", &["alive", "animal", "legs", "pet"]),
    ("horse", &["alive", "animal", "legs", "big"]),
    ("eagle", &["alive", "animal", "legs", "flies"]),
    ("salmon", &["alive", "animal", "water", "food"]),
    ("man", &["alive", "animal", "human", "legs", "adult"]),
    (
        "woman",
        &["alive", "animal", "human", "legs", "adult", "female"],
    ),
    ("child", &["alive", "animal", "human", "legs"]),
    ("bicycle", &["wheels", "sport"]),
    ("car", &["wheels", "engine", "big"]),
    ("airplane", &["engine", "flies", "big", "wheels"]),
    ("house", &["big", "home", "wood"]),
    ("boat", &["water", "big", "engine"]),
    ("laptop", &["electronic"]),
    ("phone", &["electronic", "music"]),
    ("guitar", &["wood", "music"]),
    ("chair", &["wood", "legs"]),
    ("football", &["sport"]),
    ("book", &[]),
];

/// The objects the offline players know.
pub fn known_objects() -> impl Iterator<Item = &'static str> {
    OBJECTS.iter().map(|(name, _)| *name)
}

fn has(object: &str, key: &str) -> Option<bool> {
    OBJECTS
        .iter()
        .find(|(name, _)| *name == object)
        .map(|(_, props)| props.contains(&key))
}

/// The question that guesses `object`: "Is it a potato?".
pub fn guess_question(object: &str) -> String {
    let article = if object.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("Is it {article} {object}?")
}

/// The graded answer to `question` about `secret`, from the table.
pub fn answer(secret: &str, question: &str) -> &'static str {
    let secret = secret.trim().to_lowercase();
    let q = question.trim();
    if let Some(p) = PROPERTIES
        .iter()
        .find(|p| p.question.eq_ignore_ascii_case(q))
    {
        return match has(&secret, p.key) {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not really",
        };
    }
    if let Some(guess) = known_objects().find(|o| guess_question(o).eq_ignore_ascii_case(q)) {
        if guess == secret {
            return "yes";
        }
        // A guess from another branch of the tree is completely wrong; a near miss is just no.
        let same_kind = ["alive", "animal", "human", "plant"]
            .iter()
            .all(|k| has(guess, k) == has(&secret, k));
        return if same_kind { "no" } else { "complete wrong" };
    }
    "not really"
}

/// The question-and-answer pairs so far, read from the questioner's conversation.
pub fn transcript(messages: &[Message]) -> Vec<(String, String)> {
    let mut questions = std::collections::HashMap::new();
    let mut out = Vec::new();
    for m in messages {
        match m {
            Message::Response(r) => {
                for c in r.tool_calls() {
                    let q = c.args_object()["question"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    questions.insert(c.tool_call_id.clone(), q);
                }
            }
            Message::Request(r) => {
                for p in &r.parts {
                    if let RequestPart::ToolReturn {
                        tool_call_id,
                        content,
                        ..
                    } = p
                        && let Some(q) = questions.get(tool_call_id)
                    {
                        out.push((q.clone(), content.as_str().unwrap_or("").to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Whether an answer counts as yes.
pub fn positive(answer: &str) -> bool {
    matches!(answer, "yes" | "kind of")
}

/// The scripted questioner: keeps the objects consistent with every answer so far, asks the
/// question that splits them most evenly, and guesses when one is left.
pub fn questioner_turn(messages: &[Message]) -> ModelResponse {
    let qa = transcript(messages);
    let mut candidates: Vec<&str> = known_objects().collect();
    for (q, a) in &qa {
        if let Some(p) = PROPERTIES.iter().find(|p| p.question == q) {
            candidates.retain(|o| has(o, p.key) == Some(positive(a)));
        } else if let Some(guess) = known_objects().find(|o| guess_question(o) == *q) {
            if positive(a) {
                return ModelResponse::text(guess);
            }
            candidates.retain(|o| *o != guess);
        }
    }
    let asked: Vec<&str> = qa.iter().map(|(q, _)| q.as_str()).collect();
    let question = if candidates.len() <= 1 {
        match candidates.first() {
            Some(only) => guess_question(only),
            None => return ModelResponse::text("I give up"),
        }
    } else {
        // The unasked property that splits the candidates most evenly.
        let best = PROPERTIES
            .iter()
            .filter(|p| !asked.contains(&p.question))
            .map(|p| {
                let yes = candidates
                    .iter()
                    .filter(|o| has(o, p.key) == Some(true))
                    .count();
                (yes.min(candidates.len() - yes), p)
            })
            .filter(|(split, _)| *split > 0)
            .max_by_key(|(split, _)| *split);
        match best {
            Some((_, p)) => p.question.to_string(),
            None => guess_question(candidates[0]),
        }
    };
    ModelResponse {
        parts: vec![ResponsePart::tool_call(
            "ask_question",
            json!({ "question": question }).to_string(),
            format!("q{}", qa.len() + 1),
        )],
        ..Default::default()
    }
}

/// The secret named in the answerer's instructions.
pub fn secret_in(messages: &[Message]) -> String {
    let instructions = messages
        .iter()
        .rev()
        .find_map(|m| m.as_request().and_then(|r| r.instructions.clone()))
        .unwrap_or_default();
    instructions
        .rsplit("THE SECRET OBJECT IS:")
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches('.')
        .to_string()
}

/// The scripted answerer: answers the last question truthfully from the table.
pub fn answerer_turn(messages: &[Message]) -> ModelResponse {
    let question = messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter_map(|p| match p {
            RequestPart::UserPrompt { content } => Some(content.as_str()),
            _ => None,
        })
        .next_back()
        .unwrap_or("");
    let a = answer(&secret_in(messages), question);
    ModelResponse::tool_call("final_result", json!({ "response": a }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_object_is_found_honestly() {
        for secret in known_objects() {
            // Play the scripted game with the scripted answerer's logic in a loop.
            let mut messages = vec![Message::Request(steadfast::ModelRequest::user("start"))];
            let mut guess = None;
            for _ in 0..25 {
                let r = questioner_turn(&messages);
                messages.push(Message::Response(r.clone()));
                let Some(call) = r.tool_calls().next().cloned() else {
                    guess = Some(r.text_content());
                    break;
                };
                let q = call.args_object()["question"].as_str().unwrap().to_string();
                messages.push(Message::Request(steadfast::ModelRequest {
                    parts: vec![RequestPart::ToolReturn {
                        tool_name: call.tool_name,
                        tool_call_id: call.tool_call_id,
                        content: answer(secret, &q).into(),
                    }],
                    instructions: None,
                }));
            }
            assert_eq!(guess.as_deref(), Some(secret), "secret {secret}");
        }
    }
}
