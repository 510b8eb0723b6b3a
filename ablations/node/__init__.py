"""A GPU node's archive brought home: unpacking it safely, checking what it means, and copying its runs into a store."""
