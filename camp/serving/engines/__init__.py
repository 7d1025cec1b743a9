"""The serving engines, one file each: their command lines and what they need around them."""
