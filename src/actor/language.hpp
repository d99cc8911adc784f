// The languages actor scripts are written in.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>

namespace sandflow::actor {

enum class Language { python, javascript };

std::string_view language_name(Language lang);  // "python" | "javascript"
// From the file extension (.py / .js / .cjs); nullopt for anything else.
std::optional<Language> language_from_path(const std::filesystem::path& path);
// From a name as users write it: python, py, javascript, js, node.
std::optional<Language> language_from_name(std::string_view name);

}  // namespace sandflow::actor
