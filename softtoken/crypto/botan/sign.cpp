// Botan backend: placeholder
