"""samkit."""
