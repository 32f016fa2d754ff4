"""Reading raw task data (format readers), splitting, cleaning and caching as Arrow datasets."""
