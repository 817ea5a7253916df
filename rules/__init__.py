"""trainlint's built-in rules, one module per rule, registered like any third-party pack."""
