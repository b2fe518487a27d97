#pragma once
// An app's variables as the API and the engine exchange them (deployctl env).

#include <string>

namespace agent::secrets {

struct NewVar {
    std::string name;
    std::string value;
    bool secret = false;
};

// A listing: the value of a secret is never part of it.
struct VarInfo {
    std::string name;
    bool secret = false;
    std::string value; // empty for secrets
    std::string updated_at;
};

} // namespace agent::secrets
