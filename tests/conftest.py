pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.llm_server",
    "tests.support.small_disk",
]
