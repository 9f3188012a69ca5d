//! Placeholder: the conformance kit.
