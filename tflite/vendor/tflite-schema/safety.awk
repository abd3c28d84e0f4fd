# Puts a SAFETY line above every line of flatc's output that opens an unsafe block.
/unsafe \{/ && prev !~ /SAFETY:/ {
    match($0, /^[ \t]*/)
    print substr($0, 1, RLENGTH) "// SAFETY: flatc-generated flatbuffers access; tinycnn reads only buffers checked by the verifier (root_as_model) and writes only buffers it builds."
}
{ print; prev = $0 }
