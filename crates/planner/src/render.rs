//! Rendering a plan.
