"""The vendor API: the HTTP client for every endpoint (auth, rate limit, error classes), what its
answers mean, and the backoff shared with fetching."""
