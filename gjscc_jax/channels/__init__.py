"""The physics behind `gjscc_jax.channel.Channel`: flat fading gains
(`fading`), power-delay profiles (`tdl`) and OFDM (`ofdm`).

`gjscc_jax.channel` is the user-facing home of the channel (the `Channel`
object, its registry and `from_config`); these modules hold the maths it
dispatches to and never import it.
"""
