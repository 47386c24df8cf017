"""The pure core: rules without I/O, clocks or frameworks."""
