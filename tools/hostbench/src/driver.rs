//! The driver: builds the workers, runs the matrix, writes the results.
