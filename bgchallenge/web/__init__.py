"""The HTTP edge: quart-trio routes, thin (parse → domain → repository → render)."""
