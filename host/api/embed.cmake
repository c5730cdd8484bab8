# Writes OUT: `const char lcm_api_openapi_source[]` holding the bytes of IN, NUL-terminated.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from host/api/openapi.json by embed.cmake; do not edit. */\n"
     "const char lcm_api_openapi_source[] = {\n${bytes}0x00};\n")
