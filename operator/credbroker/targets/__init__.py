"""Systems that credbroker mints credentials on, one module per kind of target."""
