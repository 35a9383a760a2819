#!/usr/bin/env bats
# Every program's usage text is its man page's SYNOPSIS, so they cannot
# drift; every man page is clean under mandoc -Tlint.

load test_helper

# words FILE: the text squeezed to single spaces.
squeeze() {
	tr -s ' \t\n' '   ' | sed 's/^ //; s/ $//'
}

synopsis() {
	mandoc -Tascii -Owidth=200 "$1" | col -bx |
		sed -n '/^SYNOPSIS/,/^[A-Z]/p' | sed '1d;$d' | squeeze
}

# usage_of PAGE: the usage text (up to its first blank line) of the program
# a page documents: man/prog.N is "prog -h", man/payctl-sub.1 "payctl sub -h".
usage_of() {
	local name
	name=$(basename "$1")
	name=${name%.*}
	case $name in
	payctl-*) payctl "${name#payctl-}" -h ;;
	*) "$name" -h ;;
	esac | sed '/^$/q' | sed 's/^usage: //' | squeeze
}

@test "each program's usage is its man page SYNOPSIS" {
	local checked=0
	for page in "$TOP"/man/*.[18]; do
		name=$(basename "$page")
		name=${name%.*}
		[ -x "$TOP/bin/${name%%-*}" ] || [ -x "$TOP/bin/$name" ] || {
			echo "no program for $page" >&2
			return 1
		}
		want=$(synopsis "$page")
		got=$(usage_of "$page")
		if [ "$want" != "$got" ]; then
			echo "$page: SYNOPSIS '$want' but usage '$got'" >&2
			return 1
		fi
		checked=$((checked + 1))
	done
	[ "$checked" -ge 4 ]
}

@test "every man page is clean under mandoc -Tlint" {
	for page in "$TOP"/man/*.[178]; do
		run -0 mandoc -Tlint -Wwarning "$page"
		[ -z "$output" ]
	done
}
