def pytest_configure(config):
    config.addinivalue_line("markers", "soak: a small sample of `make soak` (fault injection, worker kills)")
