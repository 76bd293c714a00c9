# -*- test-case-name: tests.test_zz_secrets -*-
"""
Where the doubles of L{cri_shim.testing} hand over the secrets they are
given: functions that do nothing, replaced by C{tests.secrets_guard} during
a test run to check that none of those secrets ever shows in a log.
"""


def register_secret(value):
    """
    Called with every password, token and base64 login the doubles here are
    given.  Does nothing; C{tests.secrets_guard} replaces it during a test
    run, to check that none of them ever shows in a log.
    """


def register_config_text(text):
    """
    Called with every document a L{FakeAPIServer} ConfigMap holds (they
    carry registry logins).  Does nothing; see L{register_secret}.
    """
