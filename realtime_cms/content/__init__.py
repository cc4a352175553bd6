"""Content items, their custom field values and the rules that check them."""
