"""One module per benchmark scenario; ``python -m bench`` (bench/__main__.py) runs them."""
