//! Scenario and property tests of the whole epoch computation.
