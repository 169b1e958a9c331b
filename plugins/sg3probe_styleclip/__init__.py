"""Built-in plugin: the `styleclip` analyzer (Patashnik, Wu et al. 2021, and its StyleGAN3 port):
text-driven edits with a text-image model (`sg3probe.textimage.TextImageScorer`).

`global_directions` computes the image direction of every S channel (cached, chunked, resumable)
and turns a text into an S direction; `mapper` trains latent mappers in W+; `evaluation` measures
edits with the attribute scorer and the text-image model; `prompts` maps prompts to the attribute
decisions they target. `sg3probe edit --text ...` applies a global direction from the command line.
"""
import sg3probe


@sg3probe.hookimpl
def register_analyzers(register):
    from sg3probe_styleclip.analyzer import StyleCLIP

    register(StyleCLIP)
