"""Argument checks shared by the library: one error form for every bad input."""

import numbers

import keras


def invalid_value(argument, value, expected):
    """Returns the library's `ValueError` for a bad argument.

    Args:
        argument: name of the argument, as the user typed it.
        value: the value received.
        expected: what is accepted, as a phrase ("a positive integer").

    Returns:
        A `ValueError` whose message names the argument, what is accepted and
        the value received.
    """
    return ValueError(
        f"Invalid value for argument `{argument}`. Expected {expected}. "
        f"Received: {argument}={value!r}"
    )


def _is_number(value, kind):
    """Whether `value` is an instance of `kind` (a `numbers` class) other than a bool."""
    return isinstance(value, kind) and not isinstance(value, bool)


def check_residual_fraction(residual_fraction):
    """Returns `residual_fraction` as a float if it lies strictly in (0, 1)."""
    if not _is_number(residual_fraction, numbers.Real) or not 0.0 < residual_fraction < 1.0:
        raise invalid_value(
            "residual_fraction", residual_fraction, "a float strictly between 0 and 1"
        )
    return float(residual_fraction)


def check_positive_int(argument, value):
    """Returns `value` as an int if it is an integer >= 1."""
    if not _is_number(value, numbers.Integral) or value < 1:
        raise invalid_value(argument, value, "a strictly positive integer")
    return int(value)


def check_non_negative_int(argument, value):
    """Returns `value` as an int if it is an integer >= 0 (a seed, a count that may be 0)."""
    if not _is_number(value, numbers.Integral) or value < 0:
        raise invalid_value(argument, value, "an integer >= 0")
    return int(value)


def check_positive_float(argument, value):
    """Returns `value` as a float if it is a finite real number > 0."""
    if not _is_number(value, numbers.Real) or not 0 < value < float("inf"):
        raise invalid_value(argument, value, "a finite float > 0")
    return float(value)


def invalid_type(argument, value, expected):
    """Returns the library's `TypeError` for an argument of the wrong type.

    Args:
        argument: name of the argument, as the user typed it.
        value: the value received.
        expected: what is accepted, as a phrase ("a keras_rir.data.CifarData").

    Returns:
        A `TypeError` whose message names the argument, what is accepted, the
        value received and its type.
    """
    return TypeError(
        f"Invalid type for argument `{argument}`. Expected {expected}. "
        f"Received: {argument}={_short_repr(value)} of type {type(value).__name__}"
    )


def check_type(argument, value, types, expected):
    """Returns `value` if it is an instance of `types`, else raises `invalid_type`."""
    if not isinstance(value, types):
        raise invalid_type(argument, value, expected)
    return value


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_non_negative(argument, value):
    """Returns `value` as a float if it is a real number >= 0."""
    if not _is_number(value, numbers.Real) or not value >= 0:
        raise invalid_value(argument, value, "a float >= 0")
    return float(value)


def check_choice(argument, value, choices):
    """Returns `value` if it is one of `choices`."""
    if value not in choices:
        raise invalid_value(argument, value, f"one of {sorted(choices)}")
    return value


def get_initializer(argument, identifier):
    """Resolves a Keras initializer name, config or object, naming `argument` on failure."""
    try:
        initializer = keras.initializers.get(identifier)
    except (ValueError, TypeError) as error:
        raise invalid_value(
            argument,
            identifier,
            "a Keras initializer: a name such as 'he_normal', 'glorot_normal', "
            "'glorot_uniform' or 'orthogonal', an Initializer object or its config",
        ) from error
    if initializer is None:
        raise invalid_value(argument, identifier, "a Keras initializer, not None")
    return initializer
