"""Processing provider `rsir`: thin algorithms over the same engine the dock and the CLI use."""
