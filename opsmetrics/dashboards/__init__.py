"""Dashboard data: a catalog dashboard evaluated into the JSON its page draws."""
