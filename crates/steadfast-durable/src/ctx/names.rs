//! Step ids and positions: each namespace (the root, an agent run, a parallel branch, a tool's
//! nested scope) numbers its steps, and counts each name's uses for the readable ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// A step-id namespace: the root, an agent run, a parallel branch, or a tool's nested scope.
pub(super) struct Namespace {
    prefix: String,
    seq: AtomicU32,
    names: Mutex<NameCounts>,
}

/// How many times each name was used in a namespace. Child namespaces count under
/// `ns:{name}`, alongside the step names.
///
/// A namespace uses few names (an agent run: its model requests and a tool or two), so they
/// are looked up in a short list; past [`NameCounts::FEW`] names they move to a hash map.
#[derive(Default)]
struct NameCounts {
    few: Vec<(String, u32)>,
    many: HashMap<String, u32>,
}

impl NameCounts {
    const FEW: usize = 16;

    /// Count one more use of the name `head` + `tail`; returns the uses so far.
    fn bump(&mut self, head: &str, tail: &str) -> u32 {
        if self.many.is_empty() {
            let found = self.few.iter_mut().find(|(k, _)| {
                k.len() == head.len() + tail.len()
                    && k.starts_with(head)
                    && &k[head.len()..] == tail
            });
            if let Some((_, n)) = found {
                *n += 1;
                return *n;
            }
            if self.few.len() < Self::FEW {
                self.few.push((concat(head, tail), 1));
                return 1;
            }
            self.many.extend(self.few.drain(..));
        }
        let n = self.many.entry(concat(head, tail)).or_insert(0);
        *n += 1;
        *n
    }
}

/// `head` followed by `tail`, in one allocation.
pub(super) fn concat(head: &str, tail: &str) -> String {
    let mut s = String::with_capacity(head.len() + tail.len());
    s.push_str(head);
    s.push_str(tail);
    s
}

/// Appends the decimal digits of `n` (without the formatting machinery: step ids are made
/// for every step).
pub(super) fn push_u32(s: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        s.push(char::from(d));
    }
}

/// A step's short name, the name its ids count under (`model_request`, `tool__ask`), given in
/// two parts that are joined, so that a name such as `tool__{tool}` needs no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Short<'s>(pub &'s str, pub &'s str);

impl<'s> From<&'s str> for Short<'s> {
    fn from(s: &'s str) -> Self {
        Short("", s)
    }
}

impl<'s> From<&'s String> for Short<'s> {
    fn from(s: &'s String) -> Self {
        Short("", s)
    }
}

impl Namespace {
    pub(super) fn new(prefix: String) -> Self {
        Namespace {
            prefix,
            seq: AtomicU32::new(0),
            names: Mutex::new(NameCounts::default()),
        }
    }

    fn count(&self, head: &str, tail: &str) -> u32 {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.bump(head, tail)
    }

    /// The next position and readable id for a step named `short`: `{prefix}{n}` and
    /// `{prefix}{short}#{k}`.
    pub(super) fn alloc<'s>(&self, short: impl Into<Short<'s>>) -> (String, String) {
        let Short(head, tail) = short.into();
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let k = self.count(head, tail);
        let mut position = String::with_capacity(self.prefix.len() + 10);
        position.push_str(&self.prefix);
        push_u32(&mut position, n);
        let mut step_id = String::with_capacity(self.prefix.len() + head.len() + tail.len() + 11);
        step_id.push_str(&self.prefix);
        step_id.push_str(head);
        step_id.push_str(tail);
        step_id.push('#');
        push_u32(&mut step_id, k);
        (position, step_id)
    }

    /// A child namespace named `name`: `{prefix}{name}#{k}/`.
    pub(super) fn child(&self, name: &str) -> Namespace {
        let k = self.count("ns:", name);
        let mut prefix = String::with_capacity(self.prefix.len() + name.len() + 12);
        prefix.push_str(&self.prefix);
        prefix.push_str(name);
        prefix.push('#');
        push_u32(&mut prefix, k);
        prefix.push('/');
        Namespace::new(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids the namespace gave when they were built with `format!` and counted in a map.
    struct Reference {
        prefix: String,
        seq: u32,
        names: HashMap<String, u32>,
    }

    impl Reference {
        fn count(&mut self, key: String) -> u32 {
            let n = self.names.entry(key).or_insert(0);
            *n += 1;
            *n
        }

        fn alloc(&mut self, short: &str) -> (String, String) {
            self.seq += 1;
            let k = self.count(short.to_string());
            (
                format!("{}{}", self.prefix, self.seq),
                format!("{}{short}#{k}", self.prefix),
            )
        }

        fn child(&mut self, name: &str) -> String {
            let k = self.count(format!("ns:{name}"));
            format!("{}{name}#{k}/", self.prefix)
        }
    }

    #[test]
    fn step_ids_and_positions_keep_their_format() {
        for prefix in ["", "questioner#1/tool__ask_question#3/"] {
            let ns = Namespace::new(prefix.to_string());
            let mut reference = Reference {
                prefix: prefix.to_string(),
                seq: 0,
                names: HashMap::new(),
            };
            // More distinct names than the short list holds, each used several times, and a
            // step name that shares its counter with a child namespace.
            for round in 0..12 {
                for i in 0..(NameCounts::FEW + 5) {
                    let short = format!("step_{}", (i * 7 + round) % (NameCounts::FEW + 5));
                    assert_eq!(ns.alloc(&short), reference.alloc(&short));
                }
                assert_eq!(ns.alloc("model_request"), reference.alloc("model_request"));
                assert_eq!(ns.alloc("ns:answerer"), reference.alloc("ns:answerer"));
                assert_eq!(ns.child("answerer").prefix, reference.child("answerer"));
                assert_eq!(ns.child("é").prefix, reference.child("é"));
            }
        }
    }

    #[test]
    fn decimal_digits() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u32::MAX] {
            let mut s = String::from("x");
            push_u32(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}
