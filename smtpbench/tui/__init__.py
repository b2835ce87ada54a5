"""The live dashboard (Textual). The only package that imports textual."""
