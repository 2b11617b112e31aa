"""Views, one module per area of the console. Each module keeps its own URL patterns beside its views."""
