
abad